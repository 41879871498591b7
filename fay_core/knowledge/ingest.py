"""Ingestion: files and folders walked, loaded into entries, embedded and written to the manifest and the indexes.

Ingestion is idempotent: a file whose size, modification time and content hash are unchanged is skipped, a
changed file's rows are replaced, and files gone from an ingested folder are dropped. Every file of a run is
loaded before anything is written, so a bad file stops the run with the collection as it was.

On a Chroma server (:mod:`.shared`) every write also goes to the server's manifest, and rows are replaced one
file version at a time (see there for concurrent ingests).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import KnowledgeError
from ..settings import KnowledgeSettings
from .documents import Entry
from .index import Progress, VectorIndex
from .keyword import KeywordIndex
from .loaders import BUILTIN_LOADERS
from .manifest import Manifest, check_name
from .ranking import Ranker
from .shared import MANIFEST, SharedManifest, row_prefix

#: a loaded file: path (or pseudo-path), sha256, size, modification time in ns, its entries
Loaded = tuple[str, str, int, int, list[Entry]]


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
            f"{self.collection}: {len(self.added)} added, {len(self.updated)} updated, "
            f"{len(self.unchanged)} unchanged, "
            f"{len(self.removed)} removed, {len(self.skipped)} skipped; {self.entries} entries, {self.rows} rows "
            f"in {self.seconds:.1f}s"
        )


class Ingester:
    """Turns files into indexed entries of a collection. Not locked: the knowledge base serialises."""

    def __init__(self, manifest: Manifest, index: VectorIndex, keywords: KeywordIndex, ranker: Ranker,
                 settings: KnowledgeSettings, loaders: dict[str, Callable[..., list[Entry]]]) -> None:
        self.manifest = manifest
        self.index = index
        self.keywords = keywords
        self.ranker = ranker
        self.settings = settings
        self.loaders = loaders
        self.shared: SharedManifest | None = None  #: the Chroma server's manifest, when there is one

    def ensure_collection(self, collection: str) -> None:
        """Create ``collection`` for this embedder, or check that this embedder built it."""
        check_name(collection)
        if self.shared is not None and collection == MANIFEST:
            raise KnowledgeError(f"collection name {MANIFEST!r} is reserved for the shared manifest: choose another")
        built_with, name = self.manifest.embedder_of(collection), self.index.embedder_name
        if built_with is None:
            self.manifest.add(collection, name)
            if self.shared is not None:
                self.shared.put_collection(collection, name)
        elif built_with != name:
            raise KnowledgeError(
                f"collection {collection!r} was built with embedder {built_with!r}, not {name!r}: set "
                f"knowledge.embedder={built_with} or rebuild it (fay kb delete {collection}, then ingest again)"
            )
        self.keywords.ensure(collection)
        self.index.collection(collection, create=True)

    def ingest(self, paths: Sequence[Path | str], collection: str, *, progress: Progress,
               prune: bool) -> IngestReport:
        """Ingest files and folders into ``collection`` (see the module docstring for idempotency)."""
        started = time.monotonic()
        report = IngestReport(collection)
        self.ensure_collection(collection)
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
                old = self.manifest.file(collection, key)
                if old and old.size == st.st_size and old.mtime_ns == st.st_mtime_ns:
                    report.unchanged.append(key)
                    continue
                sha = hashlib.sha256(f.read_bytes()).hexdigest()
                if old and old.sha256 == sha:
                    self.manifest.touch(collection, key, st.st_mtime_ns)
                    report.unchanged.append(key)
                    continue
                todo.append((f, source, sha, st.st_size, st.st_mtime_ns))
                (report.updated if old else report.added).append(key)
        if prune:
            for key in self.manifest.paths(collection):
                if key not in seen and any(key == r or key.startswith(r.rstrip("/") + "/") for r in roots):
                    self.drop_path(collection, key)
                    report.removed.append(key)
        loaded: list[Loaded] = []
        for f, source, sha, size, mtime in todo:
            entries = self.load(f, source)
            modified = mtime / 1e9
            entries = [Entry(**{**e.__dict__, "metadata": {**e.metadata, "modified": modified}}) for e in entries]
            loaded.append((str(f), sha, size, mtime, entries))
        self.write(collection, loaded, progress=progress, report=report)
        if report.changed:
            self.ranker.intent_model(collection)
        report.seconds = time.monotonic() - started
        return report

    def ingest_entries(self, collection: str, key: str, entries: list[Entry]) -> IngestReport:
        """Ingest entries that come from no file (a persona's inline FAQ) under the pseudo-path ``key``."""
        report = IngestReport(collection)
        started = time.monotonic()
        blob = json.dumps([e.__dict__ for e in entries], sort_keys=True, default=str)
        sha = hashlib.sha256(blob.encode()).hexdigest()
        self.ensure_collection(collection)
        old = self.manifest.file(collection, key)
        if old and old.sha256 == sha:
            report.unchanged.append(key)
        else:
            (report.updated if old else report.added).append(key)
            self.write(collection, [(key, sha, 0, 0, entries)], progress=False, report=report)
            self.ranker.intent_model(collection)
        report.seconds = time.monotonic() - started
        return report

    def load(self, path: Path, source: str) -> list[Entry]:
        """The entries of one file, by its suffix's loader."""
        loader = self.loaders.get(path.suffix.lower())
        if loader is None:
            known = ", ".join(sorted(self.loaders))
            raise KnowledgeError(f"{path}: no loader for '{path.suffix}' files (known: {known})")
        try:
            if loader in BUILTIN_LOADERS.values():
                return loader(path, source, self.settings.chunk_chars)
            return list(loader(path, source))
        except KnowledgeError:
            raise
        except Exception as exc:
            raise KnowledgeError(f"{path}: the {path.suffix} loader failed: {type(exc).__name__}: {exc}") from None

    def write(self, collection: str, loaded: list[Loaded], *, progress: Progress, report: IngestReport) -> None:
        """Embed and store everything in ``loaded``, replacing what its paths held, in one transaction."""
        shared = self.shared
        rows = [row for path, sha, *_, entries in loaded
                for row in self.index.rows_of(path, entries, sha if shared is not None else "")]
        vectors = self.index.embed_rows([(kind, text) for *_, kind, text in rows], progress=progress,
                                        desc=f"embedding {collection}")
        self.index.collection(collection, create=True)
        with self.manifest.transaction():
            for path, sha, size, mtime, entries in loaded:
                self.drop_path(collection, path)
                self.manifest.put_file(collection, path, sha, size, mtime, entries,
                                       {e.id: len(e.rows()) for e in entries})
                report.entries += len(entries)
            self.keywords.add(collection, ((r[0], r[1], r[2], r[4]) for r in rows))
            self.index.upsert(collection, rows, vectors)
        report.rows += len(rows)
        if shared is not None:
            for path, sha, size, mtime, entries in loaded:
                shared.put_file(collection, path, sha, size, mtime, entries)
            for path, sha, *_ in loaded:
                if shared.sha_of(collection, path) != sha:  # another node wrote this file after us: its version wins
                    self.index.delete_path(collection, path, row_prefix(path, sha))

    def drop_path(self, collection: str, path: str) -> None:
        """Remove a file's rows and entries (its intent model is retrained when next needed)."""
        self.ranker.forget(collection)
        if self.shared is None:
            self.index.delete_path(collection, path)
        else:  # only the version this node knows: a concurrent ingest's rows are its own to keep or remove
            old = self.manifest.file(collection, path)
            if old is not None:
                self.index.delete_path(collection, path, row_prefix(path, old.sha256))
            self.shared.drop_file(collection, path)
        self.keywords.delete_path(collection, path)
        self.manifest.drop_file(collection, path)
