"""The store's health: an integrity check when the knowledge base opens, and a failed store moved aside.

A store (``<data_dir>/knowledge``) fails its check when one of its SQLite databases (the manifest with the keyword
index, ``knowledge.sqlite3``; Chroma's ``chroma/chroma.sqlite3``) fails ``PRAGMA quick_check``, when it cannot be
opened, or when the manifest and Chroma disagree about which collections exist (a file truncated to nothing is a
valid empty database). A failed store is renamed ``knowledge.corrupt-<timestamp>`` beside it, never deleted (a bank
may need it), and an empty one takes its place: collections filled from a persona's ``knowledge.paths`` and
``knowledge.faq`` are ingested again on first use; collections filled by ``fay kb ingest`` are lost until someone
ingests them again, and :class:`StoreStatus` says so (``GET /ready``).
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

#: the store's SQLite databases, relative to its folder
DATABASES = ("knowledge.sqlite3", "chroma/chroma.sqlite3")

State = Literal["ok", "rebuilt", "degraded"]


@dataclass(frozen=True)
class StoreStatus:
    """How the knowledge base is: ``ok``; ``rebuilt`` (a failed store was moved aside, the new one is filled from
    persona files as they are needed); ``degraded`` (it cannot answer for some persona: ``reason`` says why)."""

    state: State = "ok"
    reason: str = ""
    moved_to: Path | None = None
    #: collections the failed store held (where its manifest could still be read) or that a persona misses since
    lost: tuple[str, ...] = field(default=())

    @property
    def ready(self) -> bool:
        return self.state != "degraded"


def quick_check(path: Path) -> str:
    """``PRAGMA quick_check`` of one SQLite database: ``""`` when it is sound, else what is wrong."""
    try:
        db = sqlite3.connect(path)
        try:
            rows = db.execute("PRAGMA quick_check").fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        return str(exc)
    bad = [str(r[0]) for r in rows if r[0] != "ok"]
    return "; ".join(bad[:3]) + (f" (and {len(bad) - 3} more)" if len(bad) > 3 else "")


def check_store(root: Path) -> list[str]:
    """What is wrong with the store's SQLite files, one line each (none for a sound or a new store)."""
    problems = []
    for name in DATABASES:
        path = root / name
        if path.exists():
            problem = quick_check(path)
            if problem:
                problems.append(f"{name}: {problem}")
    return problems


def readable_collections(root: Path) -> list[str]:
    """The collections a (failed) store's manifest still names, as far as it can be read."""
    try:
        db = sqlite3.connect(f"file:{root / DATABASES[0]}?mode=ro", uri=True)
        try:
            return [str(r[0]) for r in db.execute("SELECT name FROM collections ORDER BY name")]
        finally:
            db.close()
    except sqlite3.Error:
        return []


def move_aside(root: Path) -> Path:
    """Rename the store ``<root>.corrupt-<timestamp>`` (never deleted); the new path."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = root.with_name(f"{root.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = root.with_name(f"{root.name}.corrupt-{stamp}-{n}")
    root.rename(target)
    return target
