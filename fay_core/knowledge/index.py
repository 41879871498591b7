"""The vector index: Chroma collections under ``<knowledge>/chroma`` and the embeddings that go into them.

A row id is ``<path hash>:<entry id>:<row index>`` (see :meth:`VectorIndex.rows_of`), so a query needs only ids and
distances from Chroma to know each candidate's entry and which of its rows matched. On a Chroma server
(``knowledge.chroma_url``, :mod:`.shared`) the first part also carries the file's content hash, and only rows of
the versions in :attr:`VectorIndex.live` count. Embeddings are kept in an
:class:`EmbeddingCache` (one per process unless one is handed in: its keys name the embedder), so a re-ingest of
unchanged text, a second knowledge base over the same files and a repeated question embed nothing.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..engines import EmbedsQueries
from ..errors import KnowledgeError
from .documents import Entry

#: a row to index: row id, entry id, path, kind (``question`` or ``passage``), text
Row = tuple[str, str, str, str, str]
_Key = tuple[str, str, str]  # embedder name, kind, text
#: how an ingest reports its embedding: a terminal bar (``True``), or a callable given ``(embedded, to_embed)``
Progress = bool | Callable[[int, int], None]


class EmbeddingCache:
    """Vectors by ``(embedder name, kind, text)``, the least recently added dropped past ``max_items``."""

    def __init__(self, max_items: int = 50_000) -> None:
        self.max_items = max_items
        self._items: OrderedDict[_Key, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: _Key) -> np.ndarray | None:
        with self._lock:
            return self._items.get(key)

    def put(self, key: _Key, vector: np.ndarray) -> None:
        with self._lock:
            self._items[key] = vector
            if len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def update(self, items: dict[_Key, np.ndarray]) -> None:
        for key, vector in items.items():
            self.put(key, vector)

    def items(self) -> Iterator[tuple[_Key, np.ndarray]]:
        with self._lock:
            return iter(list(self._items.items()))

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


#: the cache knowledge bases share unless they are handed their own
PROCESS_CACHE = EmbeddingCache()


class VectorIndex:
    """Chroma collections of embedded rows (cosine space) and the embedder that fills them. Not locked:
    :class:`~fay_core.knowledge.store.KnowledgeBase` serialises writes and searches.

    ``stamp`` returns the manifest's change stamp: row counts are cached until it moves (every Chroma write goes
    with a manifest write).
    """

    def __init__(self, root: Path, embedder: Any, stamp: Any, cache: EmbeddingCache | None = None,
                 url: str | None = None) -> None:
        self.root = root
        self.url = url  #: a Chroma server's URL; None: embedded Chroma under ``<root>/chroma``
        #: on a server, the row id prefixes (file versions) each collection's manifest names; None: embedded
        self.live: dict[str, frozenset[str]] | None = None
        self.embedder = embedder
        self.cache = cache if cache is not None else PROCESS_CACHE
        self._stamp = stamp
        self._chroma: Any = None
        self._collections: dict[str, Any] = {}
        self._counts: dict[str, tuple[tuple[int, int], int]] = {}

    @property
    def embedder_name(self) -> str:
        """The name collections built with this embedder record (``Embedder.name``)."""
        return str(getattr(self.embedder, "name", type(self.embedder).__name__))

    # --- chroma -----------------------------------------------------------------------------------------

    @property
    def chroma(self) -> Any:
        if self._chroma is None and self.url is not None:
            from .shared import chroma_client

            self._chroma = chroma_client(self.url)
        if self._chroma is None:
            import chromadb
            from chromadb.config import Settings as ChromaSettings

            self._chroma = chromadb.PersistentClient(
                path=str(self.root / "chroma"), settings=ChromaSettings(anonymized_telemetry=False)
            )
        return self._chroma

    def collection(self, name: str, create: bool = False) -> Any:
        """The Chroma collection ``name`` (created if ``create``), or None if there is none."""
        col = self._collections.get(name)
        if col is None:
            if create:
                # embedding_function=None: Fay embeds; Chroma's default function would download a model
                col = self.chroma.get_or_create_collection(name, embedding_function=None,
                                                           metadata={"hnsw:space": "cosine"})
            else:
                try:
                    col = self.chroma.get_collection(name, embedding_function=None)
                except Exception:
                    return None
            self._collections[name] = col
        return col

    def forget_collections(self) -> None:
        """Drop the cached collection handles (they are fetched again when next used)."""
        self._collections.clear()
        self._counts.clear()

    def count(self, collection: str) -> int:
        """Rows in the collection (0 if it has none), cached until the manifest is written: Chroma's ``count()``
        scans its table, ~6 ms at 100,000 rows."""
        col = self.collection(collection)
        if col is None:
            return 0
        stamp = self._stamp()
        got = self._counts.get(collection)
        if got is None or got[0] != stamp:
            got = self._counts[collection] = (stamp, col.count())
        return got[1]

    def names(self) -> list[str]:
        """The Chroma collections on disk (chromadb < 0.6 lists collection objects, later versions names)."""
        from .shared import MANIFEST

        names = [c if isinstance(c, str) else str(c.name) for c in self.chroma.list_collections()]
        return [n for n in names if n != MANIFEST]

    def delete(self, collection: str) -> None:
        if self.collection(collection) is not None:
            self.chroma.delete_collection(collection)
        self._collections.pop(collection, None)

    def _counts_row(self, collection: str, row_id: str) -> bool:
        """Whether a row is of a file version the manifest names (always, in embedded Chroma)."""
        return self.live is None or row_id.split(":", 1)[0] in self.live.get(collection, ())

    @staticmethod
    def rows_of(path: str, entries: Iterable[Entry], sha256: str = "") -> list[Row]:
        """The rows of a file's entries: every phrasing of an FAQ question, or a chunk's passage; with
        ``sha256`` (on a Chroma server) the ids name the file's version too."""
        from .shared import row_prefix

        prefix = row_prefix(path, sha256) if sha256 else hashlib.sha1(path.encode()).hexdigest()[:10]
        return [(f"{prefix}:{e.id}:{i}", e.id, path, kind, text)
                for e in entries for i, (kind, text) in enumerate(e.rows())]

    def upsert(self, collection: str, rows: Sequence[Row], vectors: np.ndarray) -> None:
        col = self.collection(collection, create=True)
        batch = max(1, min(5000, int(getattr(self.chroma, "get_max_batch_size", lambda: 5000)())))
        for start in range(0, len(rows), batch):
            part = rows[start:start + batch]
            col.upsert(
                ids=[r[0] for r in part],
                embeddings=vectors[start:start + batch],
                metadatas=[{"entry": r[1], "path": r[2], "kind": r[3], "version": r[0].split(":", 1)[0]}
                           for r in part],
                documents=[r[4] for r in part],
            )

    def delete_path(self, collection: str, path: str, version: str | None = None) -> None:
        """Delete a file's rows (only those of one ``version``, a row id prefix, if given)."""
        col = self.collection(collection)
        if col is not None:
            col.delete(where={"path": path} if version is None else {"$and": [{"path": path},
                                                                               {"version": version}]})

    def nearest(self, collection: str, qv: np.ndarray, n: int) -> list[tuple[str, int, float]]:
        """The ``n`` rows closest to ``qv``, closest first: ``(entry id, row index, cosine similarity)``."""
        res = self.collection(collection).query(query_embeddings=[qv.tolist()], n_results=n, include=["distances"])
        out = []
        for rid, dist in zip(res["ids"][0], res["distances"][0], strict=True):
            if not self._counts_row(collection, rid):
                continue
            eid, _, row = rid.split(":", 1)[1].rpartition(":")
            out.append((eid, int(row), 1.0 - float(dist)))
        return out

    def questions(self, collection: str) -> tuple[list[str], np.ndarray, list[str]]:
        """The texts, vectors and entry ids of every question row (FAQ phrasings)."""
        col = self.collection(collection)
        got = col.get(where={"kind": "question"}, include=["embeddings", "metadatas", "documents"]) if col else {}
        texts, metas = got.get("documents") or [], got.get("metadatas") or []
        vectors = np.asarray(got["embeddings"], np.float32) if metas else np.zeros((0, 0), np.float32)
        if self.live is not None and metas:
            keep = [i for i, rid in enumerate(got["ids"]) if self._counts_row(collection, rid)]
            texts, metas, vectors = [texts[i] for i in keep], [metas[i] for i in keep], vectors[keep]
        return texts, vectors, [str(m["entry"]) for m in metas]

    def similarity(self, collection: str, entry_id: str, qv: np.ndarray) -> float:
        """The best dense cosine of an entry's rows (for entries found only by keyword)."""
        got = self.collection(collection).get(where={"entry": entry_id}, include=["embeddings"])
        embs = got.get("embeddings")
        if embs is None or len(embs) == 0:
            return 0.0
        if self.live is not None:
            embs = [e for rid, e in zip(got["ids"], embs, strict=True) if self._counts_row(collection, rid)]
            if not embs:
                return 0.0
        return float(np.max(np.asarray(embs, dtype=np.float32) @ qv))

    def close(self) -> None:
        """Forget the collections and release Chroma's client: chromadb keeps one system per path, with its
        database open, until its last client closes (``close()`` came with chromadb 1.0)."""
        self._collections.clear()
        client, self._chroma = self._chroma, None
        close = getattr(client, "close", None)
        if close is not None:
            close()

    # --- embedding --------------------------------------------------------------------------------------

    def embed_rows(self, rows: Sequence[tuple[str, str]], *, progress: Progress = False, desc: str = "embedding",
                   batch: int = 64) -> np.ndarray:
        """Vectors for ``(kind, text)`` rows, ``question`` rows as queries; kept in :attr:`cache`. ``progress``:
        ``True`` shows a bar on the terminal; a callable is called with ``(embedded, to_embed)`` after each batch
        (rows already cached are not counted)."""
        name = self.embedder_name
        out: list[np.ndarray | None] = [None] * len(rows)
        missing: list[int] = []
        for i, (kind, text) in enumerate(rows):
            hit = self.cache.get((name, kind, text))
            if hit is None:
                missing.append(i)
            else:
                out[i] = hit
        bar = None
        report = progress if callable(progress) else None
        if report is not None:
            report(0, len(missing))
        elif progress and missing:
            from tqdm import tqdm

            bar = tqdm(total=len(missing), desc=desc, unit="row")
        try:
            for kind in ("question", "passage"):
                idx = [i for i in missing if rows[i][0] == kind]
                for start in range(0, len(idx), batch):
                    part = idx[start:start + batch]
                    vecs = self._embed([rows[i][1] for i in part], query=kind == "question")
                    for i, v in zip(part, vecs, strict=True):
                        out[i] = v
                        self.cache.put((name, kind, rows[i][1]), v)
                    if bar is not None:
                        bar.update(len(part))
                    if report is not None:
                        report(sum(1 for i in missing if out[i] is not None), len(missing))
        finally:
            if bar is not None:
                bar.close()
        dim = int(getattr(self.embedder, "dim", 0)) or (len(out[0]) if out and out[0] is not None else 0)
        return np.asarray(out, dtype=np.float32).reshape(len(rows), dim)

    def _embed(self, texts: list[str], *, query: bool) -> np.ndarray:
        try:
            if not query:
                vecs: Any = self.embedder.embed_documents(texts)
            elif isinstance(self.embedder, EmbedsQueries):
                vecs = self.embedder.embed_queries(texts)
            else:
                vecs = [self.embedder.embed_query(t) for t in texts]
        except KnowledgeError:
            raise
        except Exception as exc:
            raise KnowledgeError(f"embedder {getattr(self.embedder, 'name', '?')!r} failed: {exc}") from exc
        return np.asarray(vecs, dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_rows([("question", text)])[0]
