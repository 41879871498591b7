"""Built-in plugin: speech recognition and voices on a shared speech server (``voice.asr.engine: remote``,
``voice.engine: remote``), through litellm's audio endpoints.

Any OpenAI-compatible speech server works: ``POST <api_base>/audio/transcriptions`` (multipart WAV in, JSON
``{"text"}`` out; :func:`litellm.atranscription`) and ``POST <api_base>/audio/speech`` (JSON ``{"model",
"input", "voice", "response_format": "wav"}`` in, a WAV out; :func:`litellm.aspeech`): a GPU whisper server that
many nodes share, so a node's CPU no longer bounds its voice sessions (OpenAI itself, vLLM, speaches, LocalAI, a
LiteLLM proxy...). ``fay_core.testing.SpeechServer`` is one backed by the local engines.

Settings (``plugins.remote_speech``, :class:`RemoteSpeechSettings`): ``api_base`` (nothing runs without it: ``auto``
then skips these engines), ``api_key``, the two ``model`` names the server knows, ``voice`` and ``voices`` (the
voice names it accepts from a persona), ``timeout_s``. With ``api_base`` set, ``auto`` prefers the remote engines
(priority 60, above whisper and piper).

A failing server is an :class:`~fay_core.errors.EngineError` naming it. For speech, the persona's
``voice.fallback`` chain speaks instead (``fallback: [piper, espeak]``), and the failed engine rests for
``voice.tts.rest_failed_s``; for recognition, ``voice.asr.fallback`` names the local engines to transcribe with
(e.g. ``[whisper]``), and the remote one rests for ``voice.asr.rest_failed_s``.
"""

from __future__ import annotations

import asyncio
import io
import os
import wave
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from fay_core import hookimpl
from fay_core.engines import AudioChunk, Transcript
from fay_core.errors import EngineError, EngineUnavailable
from fay_core.hookspecs import RegisterEngine, RegisterSettings


class RemoteSpeechSettings(BaseModel):
    """Settings of the ``remote`` ASR and TTS engines (``plugins.remote_speech`` /
    ``FAY_PLUGINS__REMOTE_SPEECH__<FIELD>``)."""

    model_config = ConfigDict(extra="forbid")

    api_base: str | None = Field(None, description="the speech server's OpenAI-compatible base URL, e.g. "
                                 "http://speech:8000/v1; none: the remote engines are not available")
    api_key: SecretStr | None = Field(None, description="sent as the bearer token (servers without keys ignore it)")
    asr_model: str = Field("whisper-1", description="the transcription model name the server knows")
    tts_model: str = Field("tts-1", description="the speech model name the server knows")
    voice: str = Field("alloy", description="the voice spoken when the persona names none the server accepts")
    voices: list[str] = Field(default_factory=list, description="the server's voice names a persona may choose "
                              "(voice.name); others get `voice`")
    timeout_s: float = Field(20.0, gt=0, description="longest wait for one transcription or one sentence")
    concurrency: int = Field(2, ge=1, le=256, description="transcriptions this node has in flight before it "
                             "counts the server as busy (partial transcripts are then skipped)")


def _litellm() -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network at import
    import litellm

    return litellm


def wav_bytes(pcm: bytes, sample_rate: int) -> bytes:
    """16-bit mono ``pcm`` as a WAV file."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm)
    return out.getvalue()


def read_wav(data: bytes) -> tuple[bytes, int]:
    """16-bit mono PCM and its rate from a WAV file (several channels are mixed down); ``EngineError`` if it is not
    16-bit PCM WAV."""
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            frames = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise EngineError(f"the speech server's answer is not a WAV file ({exc}): it must honour "
                          "response_format 'wav'") from None
    if width != 2:
        raise EngineError(f"the speech server sent {8 * width}-bit audio: 16-bit PCM WAV is needed")
    if channels > 1:
        frames = np.frombuffer(frames, np.int16).reshape(-1, channels).mean(axis=1).astype(np.int16).tobytes()
    return frames, rate


class _Remote:
    kind = ""

    def __init__(self, settings: RemoteSpeechSettings | None = None) -> None:
        self.settings = settings or RemoteSpeechSettings()
        if not self.settings.api_base:
            raise EngineUnavailable("no speech server is set: set plugins.remote_speech.api_base "
                                    "(FAY_PLUGINS__REMOTE_SPEECH__API_BASE=http://host:port/v1)")
        self.api_base = self.settings.api_base.rstrip("/")
        key = self.settings.api_key
        self._key = key.get_secret_value() if key is not None else "none"  # the OpenAI client wants one
        self.calls = 0

    async def warm_up(self) -> None:
        """Import litellm (about 2 s) before the first utterance needs it."""
        await asyncio.to_thread(_litellm)

    def _failed(self, what: str, exc: Exception) -> EngineError:
        detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        return EngineError(f"the speech server {self.api_base} could not {what} ({type(exc).__name__}: {detail}): "
                           "check that it runs and plugins.remote_speech.api_base")


class RemoteASR(_Remote):
    """Transcription on the speech server (``asr: remote``); safe to call from many sessions at once."""

    name = "remote"

    def __init__(self, settings: RemoteSpeechSettings | None = None) -> None:
        super().__init__(settings)
        self._in_flight = 0

    @property
    def busy(self) -> bool:
        """True while ``concurrency`` transcriptions are in flight (optional partials are skipped then)."""
        return self._in_flight >= self.settings.concurrency

    async def transcribe(self, pcm: bytes, sample_rate: int, *, language: str | None = None) -> Transcript:
        """Send 16-bit mono ``pcm`` as a WAV; ``language`` ``zh``, ``en`` or ``None``/``auto`` (the server detects)."""
        if language in ("auto", ""):
            language = None
        if len(pcm) < sample_rate // 5:  # under 0.1 s: nothing to send
            return Transcript("", language or "", 0.0)
        litellm = await asyncio.to_thread(_litellm)
        self.calls += 1
        s = self.settings
        self._in_flight += 1
        try:
            result = await litellm.atranscription(
                model=f"openai/{s.asr_model}", file=("speech.wav", wav_bytes(pcm, sample_rate), "audio/wav"),
                language=language, api_base=self.api_base, api_key=self._key, timeout=s.timeout_s, max_retries=0)
        except Exception as exc:
            raise self._failed("transcribe", exc) from None
        finally:
            self._in_flight -= 1
        text = getattr(result, "text", None)
        if not isinstance(text, str):
            raise EngineError(f"the speech server {self.api_base} answered a transcription without text")
        return Transcript(text.strip(), language or "", None)


class RemoteTTS(_Remote):
    """Voices on the speech server (``voice.engine: remote``): one WAV per sentence, word timings estimated."""

    name = "remote"

    def accepts_voice(self, voice: str) -> bool:
        return voice in self.settings.voices

    async def synthesize(
        self, text: str, *, voice: str | None = None, language: str = "en", rate: float = 1.0
    ) -> AsyncIterator[AudioChunk]:
        """Speak ``text`` (one sentence) as one chunk."""
        litellm = await asyncio.to_thread(_litellm)
        self.calls += 1
        s = self.settings
        try:
            response = await litellm.aspeech(
                model=f"openai/{s.tts_model}", input=text, voice=voice or s.voice, response_format="wav",
                speed=rate if rate != 1.0 else None, api_base=self.api_base, api_key=self._key, timeout=s.timeout_s,
                max_retries=0)
            data = response.content
        except Exception as exc:
            raise self._failed("speak", exc) from None
        pcm, rate_hz = read_wav(data)
        yield AudioChunk(pcm, rate_hz, (), text)


@hookimpl
def register_settings(register: RegisterSettings) -> None:
    register("remote_speech", RemoteSpeechSettings)


@hookimpl
def register_asr_engines(register: RegisterEngine) -> None:
    register("remote", RemoteASR, settings="remote_speech", priority=60)  # set up on purpose: preferred by auto


@hookimpl
def register_tts_engines(register: RegisterEngine) -> None:
    register("remote", RemoteTTS, settings="remote_speech", priority=60)
