"""Built-in plugin: the Silero voice activity detector (``vad: silero``), on onnxruntime.

Settings (``plugins.silero``): ``model_path``, an ONNX file with the inputs of Silero VAD v6 as shipped in
faster-whisper (the default).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from fay_core import hookimpl
from fay_core.voice.vad import SileroVAD


class SileroSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_path: Path | None = Field(None, description="Silero VAD ONNX file; default: the one in faster-whisper")


@hookimpl
def register_settings(register):  # type: ignore[no-untyped-def]
    register("silero", SileroSettings)


@hookimpl
def register_vad(register):  # type: ignore[no-untyped-def]
    register("silero", lambda s: SileroVAD(s.model_path if s else None), settings="silero")
