"""The knowledge base: Chroma (dense vectors) and SQLite FTS5 (keywords) under ``<data_dir>/knowledge/``.

Each entry (an FAQ entry or a document chunk) is indexed as one or more rows: every phrasing of an FAQ question is
its own row pointing to its entry, so a question matches the closest phrasing and the entry collects the votes of
all its phrasings. A search ranks entries by their share of the dense votes (rows aggregated per entry), refined
for FAQ entries by the collection's intent model (:mod:`.intents`, trained on the phrasings), and by BM25 over
keywords, and fuses the rankings with reciprocal rank fusion. ``Hit.confidence`` (the best dense cosine of the
entry's rows, lowered when the evidence is split between entries) is what the guardrail compares with
``knowledge.min_score``.

Ingestion is idempotent: a file whose size, modification time and content hash are unchanged is skipped, a
changed file's rows are replaced, and files gone from an ingested folder are dropped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import KnowledgeError
from ..settings import KnowledgeSettings
from .documents import Entry, Hit
from .intents import IntentModel, fingerprint
from .keyword import KeywordIndex, code_tokens
from .loaders import BUILTIN_LOADERS

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,62}[A-Za-z0-9]$")
_CACHE_MAX = 50_000
#: fusion weight of the identifier signal: an exact product code in the query outranks paraphrase similarity
EXACT_WEIGHT = 2.0
_embed_cache: OrderedDict[tuple[str, str, str], np.ndarray] = OrderedDict()
_cache_lock = threading.Lock()


def check_name(collection: str) -> str:
    """Return ``collection`` if it is a valid name (3-64 characters of ``A-Z a-z 0-9 . _ -``), else raise."""
    if not _NAME.match(collection or ""):
        raise KnowledgeError(
            f"invalid collection name {collection!r}: use 3-64 letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit"
        )
    return collection


@dataclass
class IngestReport:
    """What an ingest run did."""

    collection: str
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "path: reason"
    entries: int = 0
    rows: int = 0
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)

    def summary(self) -> str:
        return (
            f"{self.collection}: {len(self.added)} added, {len(self.updated)} updated, {len(self.unchanged)} unchanged, "
            f"{len(self.removed)} removed, {len(self.skipped)} skipped; {self.entries} entries, {self.rows} rows "
            f"in {self.seconds:.1f}s"
        )


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    embedder: str
    files: int
    entries: int
    rows: int


class KnowledgeBase:
    """Ingests files into collections and searches them. Thread-safe; one per data directory is enough.

    ``embedder`` follows :class:`fay_core.engines.Embedder`; if it also has ``embed_queries(texts)``, FAQ
    phrasings are embedded in batches as queries (e5 models want ``query:`` on both sides of a question match).
    """

    def __init__(
        self,
        root: Path,
        embedder: Any,
        settings: KnowledgeSettings | None = None,
        *,
        loaders: dict[str, Callable[..., list[Entry]]] | None = None,
        reranker: Any = None,
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.embedder = embedder
        self.settings = settings or KnowledgeSettings()
        self.loaders: dict[str, Callable[..., list[Entry]]] = {**BUILTIN_LOADERS, **(loaders or {})}
        self.reranker = reranker
        self._lock = threading.RLock()
        self.db = sqlite3.connect(self.root / "knowledge.sqlite3", check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(_SCHEMA)
        self.keywords = KeywordIndex(self.db)
        self._chroma: Any = None
        self._collections: dict[str, Any] = {}
        self._counts: dict[str, tuple[tuple[int, int], int]] = {}
        self._intents: dict[str, IntentModel | None] = {}

    @property
    def embedder_name(self) -> str:
        """The name collections built by this knowledge base record (``Embedder.name``)."""
        return str(getattr(self.embedder, "name", type(self.embedder).__name__))

    def embedder_of(self, collection: str) -> str | None:
        """The embedder ``collection`` was built with, or None if there is no such collection."""
        row = self.db.execute("SELECT embedder FROM collections WHERE name=?", (collection,)).fetchone()
        return str(row[0]) if row else None

    # --- chroma -----------------------------------------------------------------------------------------

    @property
    def chroma(self) -> Any:
        if self._chroma is None:
            import chromadb
            from chromadb.config import Settings as ChromaSettings

            self._chroma = chromadb.PersistentClient(
                path=str(self.root / "chroma"), settings=ChromaSettings(anonymized_telemetry=False)
            )
        return self._chroma

    def _count(self, collection: str, col: Any) -> int:
        """Rows in the Chroma collection, cached until this connection or another one writes the manifest
        database (every Chroma write goes with one): Chroma's ``count()`` scans its table, ~6 ms at 100,000 rows."""
        stamp = (self.db.total_changes, self.db.execute("PRAGMA data_version").fetchone()[0])
        got = self._counts.get(collection)
        if got is None or got[0] != stamp:
            got = self._counts[collection] = (stamp, col.count())
        return got[1]

    def _collection(self, name: str, create: bool = False) -> Any:
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

    # --- collections ------------------------------------------------------------------------------------

    def collections(self) -> list[CollectionInfo]:
        """Every collection with its size."""
        with self._lock:
            out = []
            for name, embedder in self.db.execute("SELECT name, embedder FROM collections ORDER BY name").fetchall():
                files = self.db.execute("SELECT COUNT(*) FROM files WHERE collection=?", (name,)).fetchone()[0]
                entries, rows = self.db.execute(
                    "SELECT COUNT(*), COALESCE(SUM(n_rows), 0) FROM entries WHERE collection=?", (name,)
                ).fetchone()
                out.append(CollectionInfo(name, embedder, files, entries, rows))
            return out

    def has(self, collection: str) -> bool:
        return self.db.execute("SELECT 1 FROM collections WHERE name=?", (collection,)).fetchone() is not None

    def delete(self, collection: str) -> bool:
        """Delete a collection; returns whether it existed."""
        with self._lock:
            existed = self.has(collection)
            if self._collection(collection) is not None:
                self.chroma.delete_collection(collection)
            self._collections.pop(collection, None)
            self._intents.pop(collection, None)
            self.keywords.drop(collection)
            for table in ("files", "entries"):
                self.db.execute(f"DELETE FROM {table} WHERE collection=?", (collection,))
            self.db.execute("DELETE FROM collections WHERE name=?", (collection,))
            return existed

    def _ensure_collection(self, collection: str) -> None:
        check_name(collection)
        built_with, name = self.embedder_of(collection), self.embedder_name
        if built_with is None:
            self.db.execute("INSERT INTO collections(name, embedder, created) VALUES (?, ?, ?)",
                            (collection, name, time.time()))
        elif built_with != name:
            raise KnowledgeError(
                f"collection {collection!r} was built with embedder {built_with!r}, not {name!r}: set "
                f"knowledge.embedder={built_with} or rebuild it (fay kb delete {collection}, then ingest again)"
            )
        self.keywords.ensure(collection)
        self._collection(collection, create=True)

    # --- ingestion --------------------------------------------------------------------------------------

    def ingest(
        self,
        paths: Sequence[Path | str],
        collection: str,
        *,
        progress: bool = False,
        prune: bool = True,
    ) -> IngestReport:
        """Ingest files and folders into ``collection`` (see the module docstring for idempotency)."""
        started = time.monotonic()
        report = IngestReport(collection)
        with self._lock:
            self._ensure_collection(collection)
            todo: list[tuple[Path, str, str, int, int]] = []  # path, source, sha, size, mtime
            seen: set[str] = set()
            roots: list[str] = []
            for raw in paths:
                root = Path(raw).expanduser().resolve()
                if not root.exists():
                    raise KnowledgeError(f"{raw}: no such file or folder")
                roots.append(str(root))
                files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
                for f in files:
                    if f.name.startswith(".") or any(part.startswith(".") for part in f.relative_to(root).parts):
                        continue
                    if f.suffix.lower() not in self.loaders:
                        report.skipped.append(f"{f}: no loader for '{f.suffix or '(no suffix)'}' files")
                        continue
                    key = str(f)
                    seen.add(key)
                    source = str(f.relative_to(root.parent)) if root.is_dir() else f.name
                    st = f.stat()
                    old = self.db.execute("SELECT size, mtime_ns, sha256 FROM files WHERE collection=? AND path=?",
                                          (collection, key)).fetchone()
                    if old and old[0] == st.st_size and old[1] == st.st_mtime_ns:
                        report.unchanged.append(key)
                        continue
                    sha = hashlib.sha256(f.read_bytes()).hexdigest()
                    if old and old[2] == sha:
                        self.db.execute("UPDATE files SET mtime_ns=? WHERE collection=? AND path=?",
                                        (st.st_mtime_ns, collection, key))
                        report.unchanged.append(key)
                        continue
                    todo.append((f, source, sha, st.st_size, st.st_mtime_ns))
                    (report.updated if old else report.added).append(key)
            if prune:
                for (key,) in self.db.execute("SELECT path FROM files WHERE collection=?", (collection,)).fetchall():
                    if key not in seen and any(key == r or key.startswith(r.rstrip("/") + "/") for r in roots):
                        self._drop_path(collection, key)
                        report.removed.append(key)
            loaded: list[tuple[str, str, int, int, list[Entry]]] = []
            for f, source, sha, size, mtime in todo:
                entries = self.load(f, source)
                modified = mtime / 1e9
                entries = [Entry(**{**e.__dict__, "metadata": {**e.metadata, "modified": modified}}) for e in entries]
                loaded.append((str(f), sha, size, mtime, entries))
            self._write(collection, loaded, progress=progress, report=report)
            if report.changed:
                self.intent_model(collection)
        report.seconds = time.monotonic() - started
        return report

    def ingest_entries(self, collection: str, key: str, entries: list[Entry]) -> IngestReport:
        """Ingest entries that come from no file (a persona's inline FAQ) under the pseudo-path ``key``."""
        report = IngestReport(collection)
        started = time.monotonic()
        sha = hashlib.sha256(json.dumps([e.__dict__ for e in entries], sort_keys=True, default=str).encode()).hexdigest()
        with self._lock:
            self._ensure_collection(collection)
            old = self.db.execute("SELECT sha256 FROM files WHERE collection=? AND path=?", (collection, key)).fetchone()
            if old and old[0] == sha:
                report.unchanged.append(key)
            else:
                (report.updated if old else report.added).append(key)
                self._write(collection, [(key, sha, 0, 0, entries)], progress=False, report=report)
                self.intent_model(collection)
        report.seconds = time.monotonic() - started
        return report

    def load(self, path: Path, source: str) -> list[Entry]:
        """The entries of one file, by its suffix's loader."""
        loader = self.loaders.get(path.suffix.lower())
        if loader is None:
            raise KnowledgeError(f"{path}: no loader for '{path.suffix}' files (known: {', '.join(sorted(self.loaders))})")
        try:
            if loader in BUILTIN_LOADERS.values():
                return loader(path, source, self.settings.chunk_chars)
            return list(loader(path, source))
        except KnowledgeError:
            raise
        except Exception as exc:
            raise KnowledgeError(f"{path}: the {path.suffix} loader failed: {type(exc).__name__}: {exc}") from None

    def _write(self, collection: str, loaded: list[tuple[str, str, int, int, list[Entry]]], *, progress: bool,
               report: IngestReport) -> None:
        """Embed and store everything in ``loaded`` (the files were all loaded first: a bad file stops the run
        before anything is written)."""
        rows: list[tuple[str, str, str, str, str]] = []  # row_id, entry_id, path, kind, text
        for path, _sha, _size, _mtime, entries in loaded:
            prefix = hashlib.sha1(path.encode()).hexdigest()[:10]
            for e in entries:
                for i, (kind, text) in enumerate(e.rows()):
                    rows.append((f"{prefix}:{e.id}:{i}", e.id, path, kind, text))
        vectors = self.embed_rows([(kind, text) for *_, kind, text in rows], progress=progress,
                                  desc=f"embedding {collection}")
        col = self._collection(collection, create=True)
        self.db.execute("BEGIN")
        try:
            for path, sha, size, mtime, entries in loaded:
                self._drop_path(collection, path)
                n_rows = {e.id: len(e.rows()) for e in entries}
                self.db.executemany(
                    "INSERT OR REPLACE INTO entries(collection, path, id, kind, title, text, source, section, page, "
                    "questions, metadata, n_rows) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    [(collection, path, e.id, e.kind, e.title, e.text, e.source, e.section, e.page,
                      json.dumps(list(e.questions), ensure_ascii=False), json.dumps(e.metadata, ensure_ascii=False),
                      n_rows[e.id]) for e in entries],
                )
                self.db.execute(
                    "INSERT OR REPLACE INTO files(collection, path, size, mtime_ns, sha256, entries) VALUES (?,?,?,?,?,?)",
                    (collection, path, size, mtime, sha, len(entries)),
                )
                report.entries += len(entries)
            self.keywords.add(collection, ((r[0], r[1], r[2], r[4]) for r in rows))
            batch = max(1, min(5000, int(getattr(self.chroma, "get_max_batch_size", lambda: 5000)())))
            for start in range(0, len(rows), batch):
                part = rows[start:start + batch]
                col.upsert(
                    ids=[r[0] for r in part],
                    embeddings=vectors[start:start + batch],
                    metadatas=[{"entry": r[1], "path": r[2], "kind": r[3]} for r in part],
                    documents=[r[4] for r in part],
                )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        report.rows += len(rows)

    def _drop_path(self, collection: str, path: str) -> None:
        self._intents.pop(collection, None)
        col = self._collection(collection)
        if col is not None:
            col.delete(where={"path": path})
        self.keywords.delete_path(collection, path)
        self.db.execute("DELETE FROM entries WHERE collection=? AND path=?", (collection, path))
        self.db.execute("DELETE FROM files WHERE collection=? AND path=?", (collection, path))

    # --- intent model ---------------------------------------------------------------------------------------

    def intent_model(self, collection: str) -> IntentModel | None:
        """The collection's intent model (see :mod:`fay_core.knowledge.intents`): loaded or trained when first
        needed after a change, None where it cannot help or is turned off."""
        with self._lock:
            if collection in self._intents:
                return self._intents[collection]
            model = self._load_or_train_intents(collection)
            self._intents[collection] = model
            return model

    def _load_or_train_intents(self, collection: str) -> IntentModel | None:
        s = self.settings
        n_faq, n_phrasings = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(1 + json_array_length(questions)), 0) FROM entries "
            "WHERE collection=? AND kind='faq'", (collection,)).fetchone()
        if s.intent_weight <= 0 or n_faq < 2 or n_phrasings <= n_faq or n_faq > s.intent_max_entries:
            return None
        files = self.db.execute("SELECT path, sha256 FROM files WHERE collection=? ORDER BY path", (collection,))
        fp = fingerprint([self.embedder_name, *(f"{p}:{h}" for p, h in files)])
        folder = self.root / "intents"
        path = folder / f"{collection}-{fp}.joblib"
        model = IntentModel.load(path) if path.exists() else None
        if model is not None:
            return model
        col = self._collection(collection)
        got = col.get(where={"kind": "question"}, include=["embeddings", "metadatas", "documents"]) if col else {}
        texts, metas = got.get("documents") or [], got.get("metadatas") or []
        if len({m["entry"] for m in metas}) < 2:
            return None
        model = IntentModel.train(texts, np.asarray(got["embeddings"], np.float32), [str(m["entry"]) for m in metas],
                                  fingerprint=fp)
        log.info("intent model for %s: %d entries, %d phrasings, trained in %.1f s", collection,
                 len(model.entries), len(texts), model.train_seconds)
        for old in folder.glob(f"{collection}-{'?' * len(fp)}.joblib"):
            old.unlink(missing_ok=True)
        model.save(path)
        return model

    # --- embedding --------------------------------------------------------------------------------------

    def embed_rows(self, rows: Sequence[tuple[str, str]], *, progress: bool = False, desc: str = "embedding",
                   batch: int = 64) -> np.ndarray:
        """Vectors for ``(kind, text)`` rows, ``question`` rows as queries; cached in memory per process."""
        name = getattr(self.embedder, "name", type(self.embedder).__name__)
        out: list[np.ndarray | None] = [None] * len(rows)
        missing: list[int] = []
        with _cache_lock:
            for i, (kind, text) in enumerate(rows):
                hit = _embed_cache.get((name, kind, text))
                if hit is None:
                    missing.append(i)
                else:
                    out[i] = hit
        bar = None
        if progress and missing:
            from tqdm import tqdm

            bar = tqdm(total=len(missing), desc=desc, unit="row")
        try:
            for kind in ("question", "passage"):
                idx = [i for i in missing if rows[i][0] == kind]
                for start in range(0, len(idx), batch):
                    part = idx[start:start + batch]
                    texts = [rows[i][1] for i in part]
                    vecs = self._embed(texts, query=kind == "question")
                    with _cache_lock:
                        for i, v in zip(part, vecs, strict=True):
                            out[i] = v
                            _embed_cache[(name, kind, rows[i][1])] = v
                            if len(_embed_cache) > _CACHE_MAX:
                                _embed_cache.popitem(last=False)
                    if bar is not None:
                        bar.update(len(part))
        finally:
            if bar is not None:
                bar.close()
        dim = int(getattr(self.embedder, "dim", 0)) or (len(out[0]) if out and out[0] is not None else 0)
        return np.asarray(out, dtype=np.float32).reshape(len(rows), dim)

    def _embed(self, texts: list[str], *, query: bool) -> np.ndarray:
        try:
            if query:
                many = getattr(self.embedder, "embed_queries", None)
                vecs = many(texts) if many else [self.embedder.embed_query(t) for t in texts]
            else:
                vecs = self.embedder.embed_documents(texts)
        except KnowledgeError:
            raise
        except Exception as exc:
            raise KnowledgeError(f"embedder {getattr(self.embedder, 'name', '?')!r} failed: {exc}") from exc
        return np.asarray(vecs, dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_rows([("question", text)])[0]

    # --- search -----------------------------------------------------------------------------------------

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
                hits.extend(self._search_one(name, query, qv, top_k))
        hits.sort(key=lambda h: h.score, reverse=True)
        hits = hits[:top_k]
        if self.reranker is not None and hits:
            hits = list(self.reranker.rerank(query, hits))[:top_k]
        return hits

    def _search_one(self, collection: str, query: str, qv: np.ndarray, top_k: int) -> list[Hit]:
        if not self.has(collection):
            raise KnowledgeError(f"unknown collection {collection!r}: ingest files into it first (fay kb ingest)")
        col = self._collection(collection)
        s = self.settings
        count = self._count(collection, col) if col is not None else 0
        dense: dict[str, list[float]] = {}
        closest: dict[str, int] = {}  # entry -> index (in Entry.rows()) of its closest row
        if count:
            # ids and distances only: a row id is "<path hash>:<entry id>:<row index>" (see _write), so neither the
            # entry nor the matched row's text needs Chroma's metadata and document fetch (~2.5 ms at 100,000 rows)
            res = col.query(query_embeddings=[qv.tolist()], n_results=min(s.candidates, count), include=["distances"])
            for rid, dist in zip(res["ids"][0], res["distances"][0], strict=True):
                eid, _, row = rid.split(":", 1)[1].rpartition(":")
                dense.setdefault(eid, []).append(1.0 - float(dist))
                closest.setdefault(eid, int(row))
        share = dense_shares(dense, s.vote_temperature)
        model = self.intent_model(collection) if count and s.intent_weight > 0 else None
        known: frozenset[str] = model.known if model is not None else frozenset()
        if model is not None:
            share = mix_intents(share, model.predict(query, qv), s.intent_weight, known)
        dense_rank = sorted(share, key=lambda e: share[e], reverse=True)
        kw_order: list[str] = []
        if s.keyword_weight > 0:
            # the intent model already weighs the words of its entries' phrasings: keywords rank the other entries
            for eid, _score in self.keywords.search(collection, query, s.candidates):
                if eid not in kw_order and eid not in known:
                    kw_order.append(eid)
        exact: list[str] = []
        codes = code_tokens(query)
        if codes:
            for eid, _score in self.keywords.search(collection, query, s.candidates, terms=codes):
                if eid not in exact:
                    exact.append(eid)
        fused: dict[str, float] = {}
        for r, eid in enumerate(exact):
            fused[eid] = EXACT_WEIGHT / (s.rrf_k + r + 1)
        for r, eid in enumerate(dense_rank):
            fused[eid] = fused.get(eid, 0.0) + 1.0 / (s.rrf_k + r + 1)
        for r, eid in enumerate(kw_order):
            fused[eid] = fused.get(eid, 0.0) + s.keyword_weight / (s.rrf_k + r + 1)
        best = sorted(fused, key=lambda e: fused[e], reverse=True)[: max(top_k, 1)]
        entries = self.entries(collection, best)
        out = []
        for eid in best:
            entry = entries.get(eid)
            if entry is None:
                continue
            sims = dense.get(eid)
            # an entry none of whose rows is among the dense candidates counts as dissimilar (0.0): with a full
            # candidate list it is below all of them, and looking its vectors up would cost a scan per hit
            sim = max(sims) if sims else (self._similarity(collection, eid, qv) if count <= s.candidates else 0.0)
            part = share.get(eid, 0.0)
            confidence = sim + s.confidence_weight * math.log(max(part, 1e-4))
            rows, i = entry.rows(), closest.get(eid, -1)
            matched = rows[i][1] if 0 <= i < len(rows) else ""
            out.append(Hit(entry, fused[eid], sim, collection, matched, exact=eid in exact,
                           share=part, confidence=confidence))
        return out

    def _similarity(self, collection: str, entry_id: str, qv: np.ndarray) -> float:
        """The best dense cosine of an entry's rows (for entries found only by keyword)."""
        col = self._collection(collection)
        got = col.get(where={"entry": entry_id}, include=["embeddings"])
        embs = got.get("embeddings")
        if embs is None or len(embs) == 0:
            return 0.0
        return float(np.max(np.asarray(embs, dtype=np.float32) @ qv))

    def entries(self, collection: str, ids: Iterable[str]) -> dict[str, Entry]:
        ids = list(ids)
        if not ids:
            return {}
        out: dict[str, Entry] = {}
        for start in range(0, len(ids), 500):
            part = ids[start:start + 500]
            marks = ",".join("?" * len(part))
            for row in self.db.execute(
                f"SELECT id, kind, title, text, source, section, page, questions, metadata FROM entries "
                f"WHERE collection=? AND id IN ({marks})", (collection, *part)
            ):
                out.setdefault(row[0], Entry(id=row[0], kind=row[1], title=row[2], text=row[3], source=row[4],
                                             section=row[5] or "", page=row[6], questions=tuple(json.loads(row[7])),
                                             metadata=json.loads(row[8])))
        return out

    def close(self) -> None:
        with self._lock:
            self._collections.clear()
            self._chroma = None
            self.db.close()


def dense_shares(dense: dict[str, list[float]], temperature: float) -> dict[str, float]:
    """Each entry's share of the soft votes of the candidate rows: ``sum(exp((sim - best) / temperature))``,
    normalised to sum to 1.

    With a small temperature the order is the best row's similarity (nearest neighbour); larger temperatures let an
    entry with many close phrasings outrank one lucky phrasing of another entry.
    """
    if not dense:
        return {}
    top = max(max(v) for v in dense.values())
    t = max(temperature, 1e-6)
    score = {e: sum(math.exp((s - top) / t) for s in sims) for e, sims in dense.items()}
    total = sum(score.values())
    return {e: v / total for e, v in score.items()}


def mix_intents(share: dict[str, float], intents: dict[str, float], weight: float,
                known: frozenset[str]) -> dict[str, float]:
    """Redistribute the dense share held by the intent model's entries by its probabilities.

    Entries the model does not know (document chunks, FAQ entries of another file without phrasings) keep their
    dense share; the model's entries together keep theirs too, split ``(1 - weight) * dense + weight * model``.
    """
    held = sum(v for e, v in share.items() if e in known)
    if held <= 0:
        return share
    out = {e: (v * (1 - weight) if e in known else v) for e, v in share.items()}
    for e, p in intents.items():
        out[e] = out.get(e, 0.0) + weight * p * held
    return out


_SCHEMA = """
CREATE TABLE IF NOT EXISTS collections(name TEXT PRIMARY KEY, embedder TEXT NOT NULL, created REAL);
CREATE TABLE IF NOT EXISTS files(collection TEXT, path TEXT, size INTEGER, mtime_ns INTEGER, sha256 TEXT,
    entries INTEGER, PRIMARY KEY(collection, path));
CREATE TABLE IF NOT EXISTS entries(collection TEXT, path TEXT, id TEXT, kind TEXT, title TEXT, text TEXT,
    source TEXT, section TEXT, page INTEGER, questions TEXT, metadata TEXT, n_rows INTEGER,
    PRIMARY KEY(collection, path, id));
CREATE INDEX IF NOT EXISTS entries_by_id ON entries(collection, id);
"""
