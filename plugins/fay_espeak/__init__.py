"""Built-in plugin: eSpeak NG voices (``voice.engine: espeak``), offline, many languages, robotic.

Registered with the lowest priority: ``auto`` takes it last, when no better voice speaks the persona's language.

Mandarin uses ``cmn-latn-pinyin`` (plain ``cmn`` reads tone numbers in English). Needs the Debian package
``espeak-ng`` (``make system-deps``). Word timings are estimated by Fay.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import AsyncIterator

from pydantic import BaseModel, ConfigDict, Field

from fay_core import hookimpl
from fay_core.engines import AudioChunk
from fay_core.errors import EngineError, EngineUnavailable
from fay_core.hookspecs import RegisterEngine, RegisterSettings
from fay_core.voice.audio import wav_to_pcm

_VOICE_ID = re.compile(r"[a-z]{2,3}(-[a-z0-9]+)*")


class EspeakSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    binary: str = Field("espeak-ng", description="the espeak-ng program")
    voices: dict[str, str] = Field(
        default_factory=lambda: {"zh": "cmn-latn-pinyin", "en": "en-us"}, description="voice per persona language"
    )
    words_per_minute: int = Field(170, ge=80, le=450)
    timeout_s: float = Field(15.0, gt=0)


class EspeakTTS:
    """Runs ``espeak-ng --stdout`` once per sentence (:class:`~fay_core.errors.EngineUnavailable` without it)."""

    name = "espeak"

    def __init__(self, settings: EspeakSettings | None = None) -> None:
        self.settings = settings or EspeakSettings()
        if shutil.which(self.settings.binary) is None:
            raise EngineUnavailable(_missing(self.settings.binary))

    def accepts_voice(self, voice: str) -> bool:
        return bool(_VOICE_ID.fullmatch(voice))

    async def synthesize(
        self, text: str, *, voice: str | None = None, language: str = "en", rate: float = 1.0
    ) -> AsyncIterator[AudioChunk]:
        s = self.settings
        binary = shutil.which(s.binary)
        if binary is None:
            raise EngineUnavailable(_missing(s.binary))
        name = voice or s.voices.get(language) or s.voices.get("en", "en-us")
        wpm = str(max(80, min(450, int(s.words_per_minute * rate))))
        proc = await asyncio.create_subprocess_exec(
            binary, "-v", name, "-s", wpm, "--stdout",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(text.encode("utf-8")), s.timeout_s)
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        if proc.returncode != 0 or not out:
            raise EngineError(f"espeak-ng failed (voice {name!r}): {err.decode(errors='replace').strip()[:200]}")
        pcm, rate_hz = wav_to_pcm(out)
        yield AudioChunk(pcm, rate_hz, (), text)


def _missing(binary: str) -> str:
    return f"{binary} is not installed: apt-get install espeak-ng (or make system-deps)"


@hookimpl
def register_settings(register: RegisterSettings) -> None:
    register("espeak", EspeakSettings)


@hookimpl
def register_tts_engines(register: RegisterEngine) -> None:
    register("espeak", EspeakTTS, settings="espeak", priority=0)  # any language, the last fallback
