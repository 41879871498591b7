"""The knowledge base: one object over the manifest, the indexes, ranking and ingestion of ``<data_dir>/knowledge/``.

Each entry (an FAQ entry or a document chunk) is indexed as one or more rows: every phrasing of an FAQ question is
its own row pointing to its entry, so a question matches the closest phrasing and the entry collects the votes of
all its phrasings. The parts, each in its own module:

- :mod:`.manifest`: collections, files and entries in SQLite;
- :mod:`.index`: the Chroma vectors and the embedding cache; :mod:`.keyword`: SQLite FTS5 keywords;
- :mod:`.ranking`: dense vote shares, the intent model, keywords and codes fused into hits;
- :mod:`.ingest`: files walked, loaded, embedded and written, idempotently.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..settings import KnowledgeSettings
from .documents import Entry, Hit
from .index import EmbeddingCache, VectorIndex
from .ingest import Ingester, IngestReport
from .intents import IntentModel
from .keyword import KeywordIndex
from .loaders import BUILTIN_LOADERS
from .manifest import CollectionInfo, Manifest, check_name
from .ranking import EXACT_WEIGHT, Ranker, dense_shares, mix_intents

__all__ = [
    "EXACT_WEIGHT",
    "CollectionInfo",
    "IngestReport",
    "KnowledgeBase",
    "check_name",
    "dense_shares",
    "mix_intents",
]


class KnowledgeBase:
    """Ingests files into collections and searches them. Thread-safe; one per data directory is enough.

    ``embedder`` follows :class:`fay_core.engines.Embedder`; if it is also
    :class:`~fay_core.engines.EmbedsQueries`, FAQ phrasings are embedded in batches as queries (e5 models want
    ``query:`` on both sides of a question match). ``embed_cache``: share embeddings with other knowledge bases
    (a benchmark's); by default each has its own.
    """

    def __init__(
        self,
        root: Path,
        embedder: Any,
        settings: KnowledgeSettings | None = None,
        *,
        loaders: dict[str, Callable[..., list[Entry]]] | None = None,
        reranker: Any = None,
        embed_cache: EmbeddingCache | None = None,
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.reranker = reranker
        self._lock = threading.RLock()
        self._texts: dict[str, tuple[tuple[int, int], str]] = {}
        self.manifest = Manifest(self.root / "knowledge.sqlite3")
        self.keywords = KeywordIndex(self.manifest.db)
        self.index = VectorIndex(self.root, embedder, self.manifest.stamp, embed_cache)
        settings = settings or KnowledgeSettings()
        self.ranker = Ranker(self.root, self.manifest, self.index, self.keywords, settings)
        self.ingester = Ingester(self.manifest, self.index, self.keywords, self.ranker, settings,
                                 {**BUILTIN_LOADERS, **(loaders or {})})

    @property
    def settings(self) -> KnowledgeSettings:
        return self.ranker.settings

    @settings.setter
    def settings(self, settings: KnowledgeSettings) -> None:
        self.ranker.settings = self.ingester.settings = settings

    @property
    def embedder(self) -> Any:
        return self.index.embedder

    @property
    def loaders(self) -> dict[str, Callable[..., list[Entry]]]:
        return self.ingester.loaders

    @property
    def embedder_name(self) -> str:
        """The name collections built by this knowledge base record (``Embedder.name``)."""
        return self.index.embedder_name

    def embedder_of(self, collection: str) -> str | None:
        """The embedder ``collection`` was built with, or None if there is no such collection."""
        return self.manifest.embedder_of(collection)

    # --- collections ------------------------------------------------------------------------------------

    def collections(self) -> list[CollectionInfo]:
        """Every collection with its size."""
        with self._lock:
            return self.manifest.collections()

    def has(self, collection: str) -> bool:
        return self.manifest.has(collection)

    def delete(self, collection: str) -> bool:
        """Delete a collection; returns whether it existed."""
        with self._lock:
            existed = self.has(collection)
            self.index.delete(collection)
            self.ranker.forget(collection)
            self.keywords.drop(collection)
            self.manifest.drop(collection)
            return existed

    # --- ingestion --------------------------------------------------------------------------------------

    def ingest(self, paths: Sequence[Path | str], collection: str, *, progress: bool = False,
               prune: bool = True) -> IngestReport:
        """Ingest files and folders into ``collection`` (see :mod:`.ingest` for idempotency)."""
        with self._lock:
            return self.ingester.ingest(paths, collection, progress=progress, prune=prune)

    def ingest_entries(self, collection: str, key: str, entries: list[Entry]) -> IngestReport:
        """Ingest entries that come from no file (a persona's inline FAQ) under the pseudo-path ``key``."""
        with self._lock:
            return self.ingester.ingest_entries(collection, key, entries)

    def load(self, path: Path, source: str) -> list[Entry]:
        """The entries of one file, by its suffix's loader."""
        return self.ingester.load(path, source)

    def intent_model(self, collection: str) -> IntentModel | None:
        """The collection's intent model (see :mod:`fay_core.knowledge.intents`), None where it cannot help."""
        with self._lock:
            return self.ranker.intent_model(collection)

    # --- embedding and search ---------------------------------------------------------------------------

    def embed_rows(self, rows: Sequence[tuple[str, str]], *, progress: bool = False, desc: str = "embedding",
                   batch: int = 64) -> np.ndarray:
        """Vectors for ``(kind, text)`` rows, ``question`` rows as queries (cached)."""
        return self.index.embed_rows(rows, progress=progress, desc=desc, batch=batch)

    def embed_query(self, text: str) -> np.ndarray:
        return self.index.embed_query(text)

    def search(self, query: str, collections: Sequence[str] | str, top_k: int | None = None) -> list[Hit]:
        """The best entries for ``query`` across ``collections``, best first."""
        if isinstance(collections, str):
            collections = [collections]
        top_k = top_k or self.settings.top_k
        query = query.strip()
        if not query:
            return []
        qv = self.embed_query(query)
        hits: list[Hit] = []
        with self._lock:
            for name in collections:
                hits.extend(self.ranker.search(name, query, qv, top_k))
        hits.sort(key=lambda h: h.score, reverse=True)
        hits = hits[:top_k]
        if self.reranker is not None and hits:
            hits = list(self.reranker.rerank(query, hits))[:top_k]
        return hits

    def entries(self, collection: str, ids: Iterable[str]) -> dict[str, Entry]:
        return self.manifest.entries(collection, ids)

    def text_of(self, collections: Sequence[str] | str) -> str:
        """The lower-cased text of ``collections``' entries (what the entity checks of
        :mod:`.answerability` look names up in), kept until the store changes."""
        if isinstance(collections, str):
            collections = [collections]
        with self._lock:
            stamp = self.manifest.stamp()
            out = []
            for name in collections:
                got = self._texts.get(name)
                if got is None or got[0] != stamp:
                    got = self._texts[name] = (stamp, self.manifest.text(name))
                out.append(got[1])
            return "\n".join(out)

    def check(self) -> list[str]:
        """What is wrong beyond the SQLite files (see :mod:`.health`): Chroma opened, and the manifest and Chroma
        holding the same collections. Raises what opening Chroma raises."""
        with self._lock:
            listed, held = set(self.manifest.names()), set(self.index.names())
        problems = []
        if listed - held:
            problems.append(f"collections missing from Chroma: {', '.join(sorted(listed - held))}")
        if held - listed:
            problems.append(f"collections missing from the manifest: {', '.join(sorted(held - listed))}")
        return problems

    def close(self) -> None:
        with self._lock:
            self.index.close()
            self.manifest.close()
