"""The manifest: what the knowledge base holds, in SQLite (``<knowledge>/knowledge.sqlite3``).

Three tables: ``collections`` (each with the embedder that built it), ``files`` (size, modification time and
content hash of every ingested file, for idempotent re-ingestion) and ``entries`` (the entries themselves, which
search hits cite). The keyword index (:mod:`.keyword`) lives in the same database, so one transaction covers both.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import KnowledgeError
from .documents import Entry

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,62}[A-Za-z0-9]$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS collections(name TEXT PRIMARY KEY, embedder TEXT NOT NULL, created REAL);
CREATE TABLE IF NOT EXISTS files(collection TEXT, path TEXT, size INTEGER, mtime_ns INTEGER, sha256 TEXT,
    entries INTEGER, PRIMARY KEY(collection, path));
CREATE TABLE IF NOT EXISTS entries(collection TEXT, path TEXT, id TEXT, kind TEXT, title TEXT, text TEXT,
    source TEXT, section TEXT, page INTEGER, questions TEXT, metadata TEXT, n_rows INTEGER,
    PRIMARY KEY(collection, path, id));
CREATE INDEX IF NOT EXISTS entries_by_id ON entries(collection, id);
"""


def check_name(collection: str) -> str:
    """Return ``collection`` if it is a valid name (3-64 characters of ``A-Z a-z 0-9 . _ -``), else raise."""
    if not _NAME.match(collection or ""):
        raise KnowledgeError(
            f"invalid collection name {collection!r}: use 3-64 letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit"
        )
    return collection


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    embedder: str
    files: int
    entries: int
    rows: int


@dataclass(frozen=True)
class FileState:
    """What the manifest remembers of an ingested file."""

    size: int
    mtime_ns: int
    sha256: str


class Manifest:
    """The SQLite bookkeeping of collections, files and entries. Not locked: :class:`KnowledgeBase` serialises."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(_SCHEMA)

    def stamp(self) -> tuple[int, int]:
        """Changes so far by this connection and by others: equal stamps mean nothing was written in between."""
        return self.db.total_changes, self.db.execute("PRAGMA data_version").fetchone()[0]

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN")
        try:
            yield
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    # --- collections ------------------------------------------------------------------------------------

    def embedder_of(self, collection: str) -> str | None:
        """The embedder ``collection`` was built with, or None if there is no such collection."""
        row = self.db.execute("SELECT embedder FROM collections WHERE name=?", (collection,)).fetchone()
        return str(row[0]) if row else None

    def names(self) -> list[str]:
        return [str(n) for (n,) in self.db.execute("SELECT name FROM collections ORDER BY name").fetchall()]

    def has(self, collection: str) -> bool:
        return self.db.execute("SELECT 1 FROM collections WHERE name=?", (collection,)).fetchone() is not None

    def add(self, collection: str, embedder: str) -> None:
        self.db.execute("INSERT INTO collections(name, embedder, created) VALUES (?, ?, ?)",
                        (collection, embedder, time.time()))

    def drop(self, collection: str) -> None:
        """Forget the collection, its files and its entries."""
        for table in ("files", "entries"):
            self.db.execute(f"DELETE FROM {table} WHERE collection=?", (collection,))
        self.db.execute("DELETE FROM collections WHERE name=?", (collection,))

    def collections(self) -> list[CollectionInfo]:
        """Every collection with its size."""
        out = []
        for name, embedder in self.db.execute("SELECT name, embedder FROM collections ORDER BY name").fetchall():
            files = self.db.execute("SELECT COUNT(*) FROM files WHERE collection=?", (name,)).fetchone()[0]
            entries, rows = self.db.execute(
                "SELECT COUNT(*), COALESCE(SUM(n_rows), 0) FROM entries WHERE collection=?", (name,)
            ).fetchone()
            out.append(CollectionInfo(name, embedder, files, entries, rows))
        return out

    # --- files ------------------------------------------------------------------------------------------

    def file(self, collection: str, path: str) -> FileState | None:
        row = self.db.execute("SELECT size, mtime_ns, sha256 FROM files WHERE collection=? AND path=?",
                              (collection, path)).fetchone()
        return FileState(*row) if row else None

    def touch(self, collection: str, path: str, mtime_ns: int) -> None:
        """Record a new modification time for a file whose content did not change."""
        self.db.execute("UPDATE files SET mtime_ns=? WHERE collection=? AND path=?", (mtime_ns, collection, path))

    def paths(self, collection: str) -> list[str]:
        return [p for (p,) in self.db.execute("SELECT path FROM files WHERE collection=?", (collection,)).fetchall()]

    def hashes(self, collection: str) -> list[tuple[str, str]]:
        """``(path, sha256)`` of every file of the collection, by path."""
        return self.db.execute("SELECT path, sha256 FROM files WHERE collection=? ORDER BY path",
                               (collection,)).fetchall()

    def put_file(self, collection: str, path: str, sha: str, size: int, mtime_ns: int, entries: list[Entry],
                 n_rows: dict[str, int]) -> None:
        """Store a file's entries (``n_rows``: index rows per entry id) and its state."""
        self.db.executemany(
            "INSERT OR REPLACE INTO entries(collection, path, id, kind, title, text, source, section, page, "
            "questions, metadata, n_rows) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            [(collection, path, e.id, e.kind, e.title, e.text, e.source, e.section, e.page,
              json.dumps(list(e.questions), ensure_ascii=False), json.dumps(e.metadata, ensure_ascii=False),
              n_rows[e.id]) for e in entries],
        )
        self.db.execute(
            "INSERT OR REPLACE INTO files(collection, path, size, mtime_ns, sha256, entries) VALUES (?,?,?,?,?,?)",
            (collection, path, size, mtime_ns, sha, len(entries)),
        )

    def drop_file(self, collection: str, path: str) -> None:
        self.db.execute("DELETE FROM entries WHERE collection=? AND path=?", (collection, path))
        self.db.execute("DELETE FROM files WHERE collection=? AND path=?", (collection, path))

    # --- entries ----------------------------------------------------------------------------------------

    def faq_counts(self, collection: str) -> tuple[int, int]:
        """FAQ entries of the collection and their phrasings (each entry's question and its variants)."""
        n_faq, n_phrasings = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(1 + json_array_length(questions)), 0) FROM entries "
            "WHERE collection=? AND kind='faq'", (collection,)).fetchone()
        return int(n_faq), int(n_phrasings)

    def text(self, collection: str) -> str:
        """Every title, phrasing, section and text of the collection's entries, lower-cased, one per line."""
        parts: list[str] = []
        for title, text, section, questions in self.db.execute(
                "SELECT title, text, section, questions FROM entries WHERE collection=?", (collection,)):
            parts += [title or "", section or "", text or "", " ".join(json.loads(questions or "[]"))]
        return "\n".join(parts).lower()

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

    def all_entries(self, collection: str) -> list[tuple[str, Entry]]:
        """``(path, entry)`` of every entry of the collection, by path and id."""
        return [(row[0], Entry(id=row[1], kind=row[2], title=row[3], text=row[4], source=row[5], section=row[6] or "",
                               page=row[7], questions=tuple(json.loads(row[8])), metadata=json.loads(row[9])))
                for row in self.db.execute(
                    "SELECT path, id, kind, title, text, source, section, page, questions, metadata FROM entries "
                    "WHERE collection=? ORDER BY path, id", (collection,))]

    def close(self) -> None:
        self.db.close()
