"""The knowledge base: one object over the manifest, the indexes, ranking and ingestion of ``<data_dir>/knowledge/``.

Each entry (an FAQ entry or a document chunk) is indexed as one or more rows: every phrasing of an FAQ question is
its own row pointing to its entry, so a question matches the closest phrasing and the entry collects the votes of
all its phrasings. The parts, each in its own module:

- :mod:`.manifest`: collections, files and entries in SQLite;
- :mod:`.index`: the Chroma vectors and the embedding cache; :mod:`.keyword`: SQLite FTS5 keywords;
- :mod:`.ranking`: dense vote shares, the intent model, keywords and codes fused into hits;
- :mod:`.ingest`: files walked, loaded, embedded and written, idempotently;
- :mod:`.shared`: with a Chroma server (``chroma_url``), the manifest on the server and this one a replica of it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..settings import KnowledgeSettings
from .documents import Entry, Hit
from .index import EmbeddingCache, Progress, VectorIndex
from .ingest import Ingester, IngestReport
from .intents import IntentModel
from .keyword import KeywordIndex
from .loaders import BUILTIN_LOADERS
from .manifest import CollectionInfo, Manifest, check_name
from .ranking import EXACT_WEIGHT, Ranker, dense_shares, mix_intents
from .shared import SharedManifest, row_prefix

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
    ``query:`` on both sides of a question match). ``embed_cache``: where embeddings are kept; by default the
    process's (:data:`~fay_core.knowledge.index.PROCESS_CACHE`), shared by every knowledge base in it.
    ``chroma_url``: the vectors and the manifest live on that Chroma server, shared with every node, and
    ``root`` holds this node's replica (see :mod:`.shared`).
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
        chroma_url: str | None = None,
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.reranker = reranker
        self._lock = threading.RLock()
        self._texts: dict[str, tuple[tuple[int, int], str]] = {}
        self.manifest = Manifest(self.root / "knowledge.sqlite3")
        self.keywords = KeywordIndex(self.manifest.db)
        self.index = VectorIndex(self.root, embedder, self.manifest.stamp, embed_cache, url=chroma_url)
        self.chroma_url = chroma_url
        self._shared: SharedManifest | None = None
        self._synced: str | None = None  # the server's stamp the replica was last brought up to
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
        with self._lock:
            self.sync()
            return self.manifest.embedder_of(collection)

    # --- the shared store -------------------------------------------------------------------------------

    def shared(self) -> SharedManifest | None:
        """The Chroma server's manifest (connected on first use), or None for an embedded store."""
        if self.chroma_url is not None and self._shared is None:
            self._shared = self.ingester.shared = SharedManifest(self.index.chroma)
        return self._shared

    def sync(self) -> bool:
        """Bring this node's replica up to the server's manifest if its stamp moved (one request when it did
        not); whether anything was applied. A no-op for an embedded store."""
        with self._lock:
            shared = self.shared()
            if shared is None:
                return False
            stamp = shared.stamp()  # first: a write after it is seen again on the next sync
            if stamp == self._synced and self.index.live is not None:
                return False
            remote_cols, files = shared.collections(), shared.files()
            local_cols = set(self.manifest.names())
            local = {(c, p): sha for c in local_cols for p, sha in self.manifest.hashes(c)}
            remote = {(f.collection, f.path): f for f in files if f.collection in remote_cols}
            changed = [f for key, f in remote.items() if local.get(key) != f.sha256]
            entries = shared.entries(changed)
            touched = {c for c, _ in local.keys() - remote.keys()} | {f.collection for f in changed}
            with self.manifest.transaction():
                for name in local_cols - remote_cols.keys():
                    self.keywords.drop(name)
                    self.manifest.drop(name)
                for name in remote_cols.keys() - local_cols:
                    self.manifest.add(name, remote_cols[name])
                    self.keywords.ensure(name)
                for c, p in local.keys() - remote.keys():
                    if c in remote_cols:
                        self.keywords.delete_path(c, p)
                        self.manifest.drop_file(c, p)
                for f in changed:
                    got = entries.get(f.key, [])
                    self.keywords.delete_path(f.collection, f.path)
                    self.manifest.drop_file(f.collection, f.path)
                    self.manifest.put_file(f.collection, f.path, f.sha256, f.size, f.mtime_ns, got,
                                           {e.id: len(e.rows()) for e in got})
                    rows = self.index.rows_of(f.path, got, f.sha256)
                    self.keywords.add(f.collection, ((r[0], r[1], r[2], r[4]) for r in rows))
            for c in touched | (local_cols ^ remote_cols.keys()):
                self.ranker.forget(c)
            self.index.forget_collections()  # a collection deleted and made again elsewhere has a new id
            self._refresh_live()
            self._synced = stamp
            return True

    def _refresh_live(self) -> None:
        self.index.live = {c: frozenset(row_prefix(p, sha) for p, sha in self.manifest.hashes(c))
                           for c in self.manifest.names()}

    def _wrote(self) -> None:
        """After this node wrote: its searches count its new rows, other nodes learn of the change."""
        shared = self.shared()
        if shared is not None:
            self._refresh_live()
            shared.bump()
            self._synced = None  # other nodes may have written meanwhile: compare in full next time

    # --- collections ------------------------------------------------------------------------------------

    def collections(self) -> list[CollectionInfo]:
        """Every collection with its size."""
        with self._lock:
            self.sync()
            return self.manifest.collections()

    def has(self, collection: str) -> bool:
        with self._lock:
            self.sync()
            return self.manifest.has(collection)

    def delete(self, collection: str) -> bool:
        """Delete a collection; returns whether it existed."""
        with self._lock:
            existed = self.has(collection)
            self.index.delete(collection)
            self.ranker.forget(collection)
            self.keywords.drop(collection)
            self.manifest.drop(collection)
            shared = self.shared()
            if shared is not None:
                shared.drop_collection(collection)
                self._wrote()
            return existed

    # --- ingestion --------------------------------------------------------------------------------------

    def ingest(self, paths: Sequence[Path | str], collection: str, *, progress: Progress = False,
               prune: bool = True) -> IngestReport:
        """Ingest files and folders into ``collection`` (see :mod:`.ingest` for idempotency); ``progress``: see
        :meth:`.VectorIndex.embed_rows`."""
        with self._lock:
            self.sync()
            try:
                return self.ingester.ingest(paths, collection, progress=progress, prune=prune)
            finally:
                self._wrote()

    def ingest_entries(self, collection: str, key: str, entries: list[Entry]) -> IngestReport:
        """Ingest entries that come from no file (a persona's inline FAQ) under the pseudo-path ``key``."""
        with self._lock:
            self.sync()
            try:
                return self.ingester.ingest_entries(collection, key, entries)
            finally:
                self._wrote()

    def load(self, path: Path, source: str) -> list[Entry]:
        """The entries of one file, by its suffix's loader."""
        return self.ingester.load(path, source)

    def intent_model(self, collection: str) -> IntentModel | None:
        """The collection's intent model (see :mod:`fay_core.knowledge.intents`), None where it cannot help."""
        with self._lock:
            self.sync()
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
            self.sync()
            for name in collections:
                hits.extend(self.ranker.search(name, query, qv, top_k))
        hits.sort(key=lambda h: h.score, reverse=True)
        hits = hits[:top_k]
        if self.reranker is not None and hits:
            hits = list(self.reranker.rerank(query, hits))[:top_k]
        return hits

    def entries(self, collection: str, ids: Iterable[str]) -> dict[str, Entry]:
        return self.manifest.entries(collection, ids)

    def entries_of(self, collection: str) -> list[tuple[str, Entry]]:
        """Every entry of ``collection`` with the path of the file it came from, by path and entry id."""
        with self._lock:
            self.sync()
            return self.manifest.all_entries(collection)

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
            self.sync()
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
