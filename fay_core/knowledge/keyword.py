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
from collections import Counter
from collections.abc import Iterable, Iterator

from ..text import HAN

_TOKEN = re.compile(f"[a-z0-9]+(?:[-_./][a-z0-9]+)*|[{HAN}]+", re.IGNORECASE)
_CJK_RUN = re.compile(f"^[{HAN}]+$")
_STOP = frozenset(
    "a an the is are was were be been do does did i you me my your we our us it its to of for in on at by and or "  # noqa: SIM905
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
    """One FTS5 table per collection in a SQLite database shared with the manifest.

    Beside each FTS5 table, ``<table>_df`` holds every term's document frequency (and, under the term ``''``,
    which no token is, the number of rows), kept in step by :meth:`add` and :meth:`delete_path` inside the caller's
    transaction. Query terms are chosen by it: FTS5 itself (``fts5vocab``) counts a term's rows by reading its whole
    posting list, some 2 ms a query at 100,000 rows for common words.
    """

    #: query terms found in more than this share of a collection's rows are left out of the query: they carry
    #: almost no BM25 weight, yet scoring their long posting lists dominates query time on large collections
    max_df = 0.08
    #: at most this many (the rarest) terms per query
    max_terms = 12

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self._ready: set[str] = set()  # collections whose df table is known to exist

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
        self._ensure_df(collection)

    def _ensure_df(self, collection: str) -> bool:
        """Make sure the df table exists (filled from the FTS5 index for a collection built before it existed);
        False if the collection has no keyword index at all."""
        if collection in self._ready:
            return True
        table = self.table(collection)
        have = {r[0] for r in self.db.execute(
            "SELECT name FROM sqlite_master WHERE name IN (?, ?, ?)", (table, f"{table}_vocab", f"{table}_df"))}
        if table not in have:
            return False
        if f"{table}_df" not in have:
            if f"{table}_vocab" not in have:
                self.db.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {table}_vocab USING fts5vocab({table}, 'row')")
            nested = self.db.in_transaction
            self.db.execute("SAVEPOINT kw_df" if nested else "BEGIN")
            try:
                self.db.execute(f"CREATE TABLE {table}_df(term TEXT PRIMARY KEY, doc INTEGER NOT NULL) WITHOUT ROWID")
                self.db.execute(f"INSERT INTO {table}_df(term, doc) SELECT term, doc FROM {table}_vocab")
                self.db.execute(f"INSERT INTO {table}_df(term, doc) SELECT '', COUNT(*) FROM {table}")
                self.db.execute("RELEASE kw_df" if nested else "COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK TO kw_df" if nested else "ROLLBACK")
                if nested:
                    self.db.execute("RELEASE kw_df")
                raise
        self._ready.add(collection)
        return True

    def _bump(self, collection: str, counts: Counter[str], sign: int) -> None:
        """Add ``sign * counts`` to the df table (``counts['']`` is the change in rows); drop terms left at 0."""
        if not counts:
            return
        df = f"{self.table(collection)}_df"
        self.db.executemany(
            f"INSERT INTO {df}(term, doc) VALUES (?, ?) ON CONFLICT(term) DO UPDATE SET doc = doc + excluded.doc",
            ((t, sign * n) for t, n in counts.items()),
        )
        if sign < 0:
            self.db.executemany(f"DELETE FROM {df} WHERE term = ? AND doc <= 0 AND term != ''", ((t,) for t in counts))

    def _row_count(self, collection: str) -> int:
        row = self.db.execute(f"SELECT doc FROM {self.table(collection)}_df WHERE term = ''").fetchone()
        return int(row[0]) if row else 0

    def selective_terms(self, collection: str, terms: list[str]) -> list[str]:
        """The query terms worth searching: present, not too common, the rarest first."""
        if not terms or not self._ensure_df(collection):
            return []
        marks = ",".join("?" * (len(terms) + 1))
        df = dict(self.db.execute(f"SELECT term, doc FROM {self.table(collection)}_df WHERE term IN ({marks})",
                                  ["", *terms]).fetchall())
        n = df.pop("", 0)
        present = sorted((df[t], t) for t in terms if t in df)
        if n >= 1000:  # small collections: every term counts
            present = [(d, t) for d, t in present if d <= self.max_df * n]
        return [t for _, t in present[: self.max_terms]]

    def add(self, collection: str, rows: Iterable[tuple[str, str, str, str]]) -> None:
        """Add ``(row_id, entry_id, path, text)`` rows."""
        self._ensure_df(collection)
        counts: Counter[str] = Counter()

        def bodies() -> Iterator[tuple[str, str, str, str]]:
            for row_id, entry_id, path, text in rows:
                toks = tokens(text)
                counts.update(set(toks))
                counts[""] += 1
                yield " ".join(toks), row_id, entry_id, path

        self.db.executemany(
            f"INSERT INTO {self.table(collection)}(body, row_id, entry_id, path) VALUES (?, ?, ?, ?)", bodies()
        )
        self._bump(collection, counts, +1)

    def delete_path(self, collection: str, path: str) -> None:
        if not self._ensure_df(collection):
            return
        table = self.table(collection)
        counts: Counter[str] = Counter()
        for (body,) in self.db.execute(f"SELECT body FROM {table} WHERE path = ?", (path,)):
            counts.update(set(body.split()))
            counts[""] += 1
        self.db.execute(f"DELETE FROM {table} WHERE path = ?", (path,))
        self._bump(collection, counts, -1)

    def drop(self, collection: str) -> None:
        self._ready.discard(collection)
        table = self.table(collection)
        self.db.execute(f"DROP TABLE IF EXISTS {table}_df")
        self.db.execute(f"DROP TABLE IF EXISTS {table}_vocab")
        self.db.execute(f"DROP TABLE IF EXISTS {table}")

    def search(self, collection: str, text: str, limit: int, *,
               terms: list[str] | None = None) -> list[tuple[str, float]]:
        """``(entry_id, bm25)`` of the best-matching rows, best first (lower bm25 is better).

        ``terms`` (already index tokens) replaces the tokens of ``text`` when given.
        """
        try:
            wanted = list(dict.fromkeys(terms if terms is not None else tokens(text)))
            picked = self.selective_terms(collection, wanted)
            query = " OR ".join('"' + t.replace('"', "") + '"' for t in picked)
            if not query:
                return []
            table = self.table(collection)
            cur = self.db.execute(
                f"SELECT entry_id, bm25({table}) AS s FROM {table} WHERE {table} MATCH ? ORDER BY s LIMIT ?",
                (query, limit),
            )
            return [(row[0], float(row[1])) for row in cur]
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                self._ready.discard(collection)
                return []
            raise
