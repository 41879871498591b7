"""Built-in plugin: the Silero voice activity detector (``voice.vad.engine: silero``, or ``auto``), on onnxruntime.

- :class:`SileroVAD` is the engine: ONE onnxruntime session shared by every voice session (loaded on first use).
  :meth:`SileroVAD.create_stream` gives a :class:`SileroStream` that keeps one session's recurrent state; the
  core's :class:`~fay_core.voice.vad.Segmenter` turns its probabilities into speech events.

Settings (``plugins.silero``): ``model_path``, an ONNX file with the inputs of Silero VAD v6 (``input`` of
64 + 512 samples, ``h``, ``c``); by default the one that ships inside ``faster-whisper``
(``faster_whisper/assets``).
"""

from __future__ import annotations

import threading
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from fay_core import hookimpl
from fay_core.errors import EngineError, EngineUnavailable
from fay_core.hookspecs import RegisterEngine, RegisterSettings

WINDOW = 512  # samples per model call at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous window the model sees


class SileroSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_path: Path | None = Field(None, description="Silero VAD ONNX file; default: the one in faster-whisper")


def default_model_path() -> Path:
    """The Silero VAD model shipped inside faster-whisper (found without importing it)."""
    spec = find_spec("faster_whisper")
    if spec is None or not spec.submodule_search_locations:
        raise EngineUnavailable(
            "the Silero VAD model ships with faster-whisper: pip install faster-whisper "
            "(or set plugins.silero.model_path)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "assets" / "silero_vad_v6.onnx"


class SileroVAD:
    """The Silero VAD engine (``vad: silero``). Thread-safe; the model loads on the first stream.

    Creating one checks (cheaply) that onnxruntime and the model file are there, and raises
    :class:`~fay_core.errors.EngineUnavailable` otherwise.
    """

    name = "silero"

    def __init__(self, model_path: str | Path | None = None) -> None:
        if find_spec("onnxruntime") is None:
            raise EngineUnavailable("onnxruntime is not installed (Silero VAD runs on it): pip install onnxruntime")
        self.model_path = Path(model_path) if model_path else default_model_path()
        if not self.model_path.is_file():
            raise EngineUnavailable(f"Silero VAD model not found at {self.model_path}: set plugins.silero.model_path")
        self._session: Any = None
        self._lock = threading.Lock()

    def load(self) -> Any:
        """Load the ONNX model once (idempotent) and return the shared inference session."""
        with self._lock:
            if self._session is None:
                import onnxruntime as ort

                opts = ort.SessionOptions()
                opts.inter_op_num_threads = 1
                opts.intra_op_num_threads = 1
                opts.log_severity_level = 4
                self._session = ort.InferenceSession(
                    str(self.model_path), providers=["CPUExecutionProvider"], sess_options=opts
                )
            return self._session

    def create_stream(self, sample_rate: int = 16000) -> SileroStream:
        """A new per-session stream (its own recurrent state; the model is shared)."""
        if sample_rate != 16000:
            raise EngineError(f"Silero VAD here runs at 16000 Hz, not {sample_rate}: resample the microphone audio")
        return SileroStream(self.load())


class SileroStream:
    """One session's Silero state: call :meth:`probability` with consecutive 512-sample frames."""

    frame_samples = WINDOW
    sample_rate = 16000

    def __init__(self, session: Any) -> None:
        self._session = session
        self._input = np.zeros((1, CONTEXT + WINDOW), dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        """Forget the audio heard so far (before an unrelated stream)."""
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._input[:] = 0.0

    def probability(self, frame: bytes) -> float:
        """Speech probability (0..1) of one frame of 512 16-bit samples."""
        x = self._input
        x[0, :CONTEXT] = x[0, -CONTEXT:]
        x[0, CONTEXT:] = np.frombuffer(frame, dtype=np.int16)
        x[0, CONTEXT:] *= 1.0 / 32768.0
        out, self._h, self._c = self._session.run(None, {"input": x, "h": self._h, "c": self._c})
        return float(out.reshape(-1)[0])


@hookimpl
def register_settings(register: RegisterSettings) -> None:
    register("silero", SileroSettings)


@hookimpl
def register_vad(register: RegisterEngine) -> None:
    def create(settings: SileroSettings | None) -> SileroVAD:
        return SileroVAD(settings.model_path if settings else None)

    register("silero", create, settings="silero", priority=50)  # language-neutral
