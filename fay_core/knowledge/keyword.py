"""The keyword signal: SQLite FTS5 with BM25 over tokens that suit English, Chinese and product codes.

Text is turned into tokens before it reaches FTS5: English words (lower-cased, common stop words out), product
codes kept whole and also split (``HB-CD-12M`` gives ``hbcd12m``, ``hb``, ``cd``, ``12m``), and Chinese runs as
character bigrams plus single characters (the CJK-bigram scheme of Lucene's CJKAnalyzer: no dictionary, no model).
FTS5 then ranks rows with ``bm25()``.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Iterable

_TOKEN = re.compile(r"[a-z0-9]+(?:[-_./][a-z0-9]+)*|[\u3400-\u9fff\uf900-\ufaff]+", re.IGNORECASE)
_CJK_RUN = re.compile(r"^[\u3400-\u9fff\uf900-\ufaff]+$")
_STOP = frozenset(
    "a an the is are was were be been do does did i you me my your we our us it its to of for in on at by and or "
    "what how can could would should will with from this that there as if so not no have has had get any".split()
)
_CJK_STOP = frozenset("的了吗呢吧啊我你您是在有和就都也")


def tokens(text: str) -> list[str]:
    """Index tokens of ``text`` (see the module docstring)."""
    out: list[str] = []
    for raw in _TOKEN.findall(text):
        if _CJK_RUN.match(raw):
            chars = [c for c in raw]
            out.extend(c for c in chars if c not in _CJK_STOP)
            out.extend(a + b for a, b in zip(chars, chars[1:], strict=False))
            continue
        low = raw.lower()
        parts = re.split(r"[-_./]", low)
        if len(parts) > 1:
            out.append("".join(parts))
            out.extend(p for p in parts if p and p not in _STOP)
        elif low not in _STOP:
            out.append(low)
    return out


def code_tokens(text: str) -> list[str]:
    """Identifier-like tokens of ``text`` (letters and digits, e.g. ``HB-TD-12M``, ``A-1001-01``), joined and
    lower-cased as the index stores them."""
    out = []
    for raw in _TOKEN.findall(text):
        if _CJK_RUN.match(raw) or len(raw) < 4:
            continue
        if re.search(r"[a-z]", raw, re.IGNORECASE) and re.search(r"\d", raw):
            out.append(re.sub(r"[-_./]", "", raw.lower()))
    return list(dict.fromkeys(out))


def match_query(text: str, limit: int = 48) -> str:
    """An FTS5 query that matches any of ``text``'s tokens (each quoted), or ``""`` if it has none."""
    seen = list(dict.fromkeys(tokens(text)))[:limit]
    return " OR ".join('"' + t.replace('"', "") + '"' for t in seen)


class KeywordIndex:
    """One FTS5 table per collection in a SQLite database shared with the manifest."""

    #: query terms found in more than this share of a collection's rows are left out of the query: they carry
    #: almost no BM25 weight, yet scoring their long posting lists dominates query time on large collections
    max_df = 0.08
    #: at most this many (the rarest) terms per query
    max_terms = 12

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self._rows: dict[str, int] = {}

    @staticmethod
    def table(collection: str) -> str:
        return "kw_" + hashlib.sha1(collection.encode()).hexdigest()[:16]

    def ensure(self, collection: str) -> None:
        table = self.table(collection)
        self.db.execute(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS {table} USING fts5("
            "body, row_id UNINDEXED, entry_id UNINDEXED, path UNINDEXED, tokenize='unicode61 remove_diacritics 2')"
        )
        self.db.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {table}_vocab USING fts5vocab({table}, 'row')")

    def _row_count(self, collection: str) -> int:
        n = self._rows.get(collection)
        if n is None:
            n = self._rows[collection] = self.db.execute(f"SELECT COUNT(*) FROM {self.table(collection)}").fetchone()[0]
        return n

    def selective_terms(self, collection: str, terms: list[str]) -> list[str]:
        """The query terms worth searching: present, not too common, the rarest first."""
        if not terms:
            return []
        n = self._row_count(collection)
        marks = ",".join("?" * len(terms))
        df = dict(self.db.execute(f"SELECT term, doc FROM {self.table(collection)}_vocab WHERE term IN ({marks})",
                                  terms).fetchall())
        present = sorted((df[t], t) for t in terms if t in df)
        if n >= 1000:  # small collections: every term counts
            present = [(d, t) for d, t in present if d <= self.max_df * n]
        return [t for _, t in present[: self.max_terms]]

    def add(self, collection: str, rows: Iterable[tuple[str, str, str, str]]) -> None:
        """Add ``(row_id, entry_id, path, text)`` rows."""
        self._rows.pop(collection, None)
        self.db.executemany(
            f"INSERT INTO {self.table(collection)}(body, row_id, entry_id, path) VALUES (?, ?, ?, ?)",
            ((" ".join(tokens(text)), row_id, entry_id, path) for row_id, entry_id, path, text in rows),
        )

    def delete_path(self, collection: str, path: str) -> None:
        self._rows.pop(collection, None)
        self.db.execute(f"DELETE FROM {self.table(collection)} WHERE path = ?", (path,))

    def drop(self, collection: str) -> None:
        self._rows.pop(collection, None)
        self.db.execute(f"DROP TABLE IF EXISTS {self.table(collection)}_vocab")
        self.db.execute(f"DROP TABLE IF EXISTS {self.table(collection)}")

    def search(self, collection: str, text: str, limit: int, *, terms: list[str] | None = None) -> list[tuple[str, float]]:
        """``(entry_id, bm25)`` of the best-matching rows, best first (lower bm25 is better).

        ``terms`` (already index tokens) replaces the tokens of ``text`` when given.
        """
        try:
            wanted = list(dict.fromkeys(terms if terms is not None else tokens(text)))
            picked = self.selective_terms(collection, wanted)
            query = " OR ".join('"' + t.replace('"', "") + '"' for t in picked)
            if not query:
                return []
            cur = self.db.execute(
                f"SELECT entry_id, bm25({self.table(collection)}) AS s FROM {self.table(collection)} "
                f"WHERE {self.table(collection)} MATCH ? ORDER BY s LIMIT ?",
                (query, limit),
            )
            return [(row[0], float(row[1])) for row in cur]
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
