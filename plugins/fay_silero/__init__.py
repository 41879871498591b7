"""Built-in plugin: the Silero voice activity detector (``voice.vad.engine: silero``, or ``auto``), on onnxruntime.

- :class:`SileroVAD` is the engine: ONE onnxruntime session shared by every voice session (loaded on first use).
  :meth:`SileroVAD.create_stream` gives a :class:`SileroStream` that keeps one session's recurrent state; the
  core's :class:`~fay_core.voice.vad.Segmenter` turns its probabilities into speech events.
- :meth:`SileroVAD.probabilities` scores one window of many streams in one call (the core's
  :class:`~fay_core.voice.vad_batch.VADBatcher` sends every session's window of a round): a second session of
  the same model with the streams in the LSTM's batch axis (:mod:`fay_silero.batch`), checked at load against
  the per-stream calls.

Settings (``plugins.silero``): ``model_path``, an ONNX file with the inputs of Silero VAD v6 (``input`` of
64 + 512 samples, ``h``, ``c``); by default the one that ships inside ``faster-whisper``
(``faster_whisper/assets``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from fay_core import hookimpl
from fay_core.errors import EngineError, EngineUnavailable
from fay_core.hookspecs import RegisterEngine, RegisterSettings

from .batch import batched_model

log = logging.getLogger(__name__)

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
        self._batched: Any = None  # the batch session, once batches() found that it works
        self._batches: bool | None = None
        self._lock = threading.Lock()

    @staticmethod
    def _inference(model: str | bytes) -> Any:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 4
        return ort.InferenceSession(model, providers=["CPUExecutionProvider"], sess_options=opts)

    def load(self) -> Any:
        """Load the ONNX model once (idempotent) and return the shared inference session."""
        with self._lock:
            if self._session is None:
                self._session = self._inference(str(self.model_path))
            return self._session

    def batches(self) -> bool:
        """Whether :meth:`probabilities` works with this model: it loads as a batch and scores a test signal as
        the per-stream calls do. Loads both sessions once; False (and a log line) for a model it cannot batch."""
        if self._batches is None:
            single = self.load()
            with self._lock:
                if self._batches is None:
                    self._batches = self._load_batched(single)
        return self._batches

    def _load_batched(self, single: Any) -> bool:
        patched = batched_model(self.model_path.read_bytes())
        if patched is None:
            log.info("Silero VAD model %s has another graph: each session's window is scored on its own",
                     self.model_path)
            return False
        try:
            self._batched = self._inference(patched)
            rng = np.random.default_rng(7)
            frames = [(rng.standard_normal(WINDOW * 3) * 3000).astype(np.int16).tobytes() for _ in range(3)]
            alone = [SileroStream(single) for _ in frames]
            together = [SileroStream(single) for _ in frames]
            for k in range(3):
                piece = [f[k * WINDOW * 2 : (k + 1) * WINDOW * 2] for f in frames]
                want = [s.probability(p) for s, p in zip(alone, piece, strict=True)]
                got = self._run_batch(together, piece)
                if max(abs(a - b) for a, b in zip(want, got, strict=True)) > 1e-5:
                    raise EngineError(f"batched scores {got} differ from the per-stream ones {want}")
        except Exception as exc:
            self._batched = None
            log.warning("Silero VAD: batched scoring does not work with %s (%s): each session's window is scored "
                        "on its own", self.model_path, exc)
            return False
        return True

    def probabilities(self, streams: Sequence[SileroStream], frames: Sequence[bytes]) -> list[float]:
        """Speech probability of ``frames[i]`` (512 16-bit samples) in ``streams[i]``, in one model call;
        each stream's state advances as with its own :meth:`SileroStream.probability` (same scores)."""
        if not self.batches():
            raise EngineError(f"Silero VAD model {self.model_path} cannot score batches")
        return self._run_batch(streams, frames)

    def _run_batch(self, streams: Sequence[SileroStream], frames: Sequence[bytes]) -> list[float]:
        n = len(streams)
        if n != len(frames):
            raise EngineError(f"{n} streams but {len(frames)} frames")
        x = np.empty((n, CONTEXT + WINDOW), dtype=np.float32)
        h = np.empty((1, n, 128), dtype=np.float32)
        c = np.empty((1, n, 128), dtype=np.float32)
        for i, (s, frame) in enumerate(zip(streams, frames, strict=True)):
            x[i, :CONTEXT] = s._input[0, -CONTEXT:]
            x[i, CONTEXT:] = np.frombuffer(frame, dtype=np.int16)
            h[0, i] = s._h[0, 0]
            c[0, i] = s._c[0, 0]
        x[:, CONTEXT:] *= 1.0 / 32768.0
        out, hn, cn = self._batched.run(None, {"input": x, "h": h, "c": c})
        for i, s in enumerate(streams):  # the states change only once the call succeeded
            s._input[0, CONTEXT:] = x[i, CONTEXT:]
            s._h = hn[:, i : i + 1].copy()
            s._c = cn[:, i : i + 1].copy()
        return [float(p) for p in out.reshape(-1)]

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
