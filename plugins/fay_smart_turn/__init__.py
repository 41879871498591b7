"""Built-in plugin: Smart Turn v3, the end-of-turn model (``voice.turn.engine: smart_turn``, or ``auto``).

Smart Turn (pipecat-ai, BSD-2) is a Whisper-tiny encoder with a classifier over the last 8 s of 16 kHz audio:
it says whether the speech ends a turn ("complete") or only pauses mid-sentence, from the voice alone (pitch,
pace, filled pauses), in 23 languages including English and Chinese. The int8 CPU export is about 8 MB and one
call takes about 40 ms on one core (features: :mod:`fay_smart_turn.features`, numpy only).

Where the model comes from, first found wins:

1. ``plugins.smart_turn.model_path``: a local ONNX file (an error if it is not there);
2. the offline copy that ``make smart-turn`` (``python -m fay_smart_turn.fetch``) extracts from the
   ``pipecat-ai`` wheel, without pipecat's dependencies, into ``<venv>/share/fay/smart_turn/`` (or
   ``plugins.smart_turn.model_dir``), with its licence;
3. an installed ``pipecat-ai`` package's own copy (package data, found without importing pipecat);
4. the Hugging Face hub model ``pipecat-ai/smart-turn-v3`` (``repo``, ``filename``): the local cache, then a
   download on first use when ``download`` is true (``huggingface_hub``, a dependency of faster-whisper).

With none of these the factory raises :class:`~fay_core.errors.EngineUnavailable` and the voice pipeline ends turns
by the silence rule (one warning in the log).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from fay_core import hookimpl
from fay_core.errors import EngineError, EngineUnavailable
from fay_core.hookspecs import RegisterEngine, RegisterSettings

from .features import RATE, last_seconds, log_mel

log = logging.getLogger(__name__)

FILENAME = "smart-turn-v3.2-cpu.onnx"
REPO = "pipecat-ai/smart-turn-v3"


def offline_dir() -> Path:
    """Where ``python -m fay_smart_turn.fetch`` puts the model by default: ``<sys.prefix>/share/fay/smart_turn``."""
    return Path(sys.prefix) / "share" / "fay" / "smart_turn"


class SmartTurnSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_path: Path | None = Field(None, description="a Smart Turn v3 ONNX file; default: found as the module says")
    model_dir: Path | None = Field(None, description="folder of the offline copy; default: <venv>/share/fay/smart_turn")
    repo: str = Field(REPO, description="Hugging Face hub model")
    filename: str = Field(FILENAME, description="the ONNX file in the folder, the pipecat wheel or the hub model")
    download: bool = Field(True, description="download from the hub on first use when no local copy is found")
    threads: int = Field(1, ge=1, le=16, description="onnxruntime threads per call")
    workers: int = Field(2, ge=1, le=64, description="calls that may run at once (sessions share the model)")


def _pipecat_copy(filename: str) -> Path | None:
    spec = find_spec("pipecat")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "audio" / "turn" / "smart_turn" / "data" / filename
    return path if path.is_file() else None


def _hub_cache(repo: str, filename: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(repo, filename)
    return Path(found) if isinstance(found, str) else None


def find_model(settings: SmartTurnSettings) -> Path | None:
    """The local model file the settings lead to (``None``: only the hub is left)."""
    if settings.model_path is not None:
        if not settings.model_path.is_file():
            raise EngineUnavailable(f"Smart Turn model not found at {settings.model_path}: fix "
                                    "plugins.smart_turn.model_path, or unset it to use the offline copy or the hub")
        return settings.model_path
    local = (settings.model_dir or offline_dir()) / settings.filename
    if local.is_file():
        return local
    return _pipecat_copy(settings.filename) or _hub_cache(settings.repo, settings.filename)


class SmartTurn:
    """The Smart Turn v3 detector: one onnxruntime session shared by every voice session, loaded on first use."""

    name = "smart_turn"

    def __init__(self, settings: SmartTurnSettings | None = None) -> None:
        self.settings = settings or SmartTurnSettings()
        if find_spec("onnxruntime") is None:
            raise EngineUnavailable("onnxruntime is not installed (Smart Turn runs on it): pip install onnxruntime")
        self.model_path = find_model(self.settings)
        if self.model_path is None and not (self.settings.download and find_spec("huggingface_hub")):
            raise EngineUnavailable(
                f"no Smart Turn model here: run `make smart-turn` (python -m fay_smart_turn.fetch) for the offline "
                f"copy, set plugins.smart_turn.model_path, or allow plugins.smart_turn.download ({self.settings.repo})"
            )
        self._session: Any = None
        self._failed: str = ""
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=self.settings.workers, thread_name_prefix="smart-turn")

    def load(self) -> Any:
        """Load the model once (idempotent; downloads it first if only the hub has it) and return the session."""
        with self._lock:
            if self._session is None:
                if self._failed:
                    raise EngineError(f"Smart Turn could not load: {self._failed}")
                try:
                    self._session = self._open()
                except Exception as exc:
                    self._failed = f"{type(exc).__name__}: {exc}"
                    raise EngineError(f"Smart Turn could not load: {self._failed}") from exc
            return self._session

    def _open(self) -> Any:
        import onnxruntime as ort

        path = self.model_path
        if path is None:
            from huggingface_hub import hf_hub_download

            path = self.model_path = Path(hf_hub_download(self.settings.repo, self.settings.filename))
        opts = ort.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = self.settings.threads
        opts.log_severity_level = 4
        log.info("loading Smart Turn from %s", path)
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"], sess_options=opts)

    async def warm_up(self) -> None:
        """Load the model and run it once now (in the engine's pool), so that the first pause does not wait."""
        if self._session is None:
            await asyncio.get_running_loop().run_in_executor(self._pool, self.probability, bytes(3200))

    def probability(self, pcm: bytes, sample_rate: int = RATE) -> float:
        """Probability that ``pcm`` (16-bit mono at 16 kHz) ends a turn; blocking (about 40 ms)."""
        if sample_rate != RATE:
            raise EngineError(f"Smart Turn takes 16000 Hz audio, not {sample_rate}: resample it first")
        session = self.load()
        audio = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0
        features = log_mel(last_seconds(audio))[None]
        out = session.run(None, {"input_features": features})[0]
        return float(np.asarray(out).reshape(-1)[0])

    async def end_of_turn(self, pcm: bytes, sample_rate: int, *, language: str | None = None) -> float:
        """See :meth:`fay_core.engines.TurnDetector.end_of_turn`; the model is language-neutral."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.probability, pcm, sample_rate)


@hookimpl
def register_settings(register: RegisterSettings) -> None:
    register("smart_turn", SmartTurnSettings)


@hookimpl
def register_turn_detectors(register: RegisterEngine) -> None:
    register("smart_turn", SmartTurn, settings="smart_turn", priority=50)  # 23 languages, en and zh among them
