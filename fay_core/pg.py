"""One PostgreSQL database for the record of every node: the connection, its schema, and what a bank queries.

With ``FAY_AUDIT__URL=postgresql://...`` the audit chain (:mod:`fay_core.audit_pg`), the role-play reports
(:mod:`fay_core.roleplay.reports_pg`) and, through the audit records, the declined questions of all nodes land in
one database. The driver is psycopg 3 (the ``postgres`` extra): its synchronous connection carries the audit's
"record first" write, which must be committed before :meth:`~fay_core.brain.agent.Agent.start_turn` returns (as
the files' fsync is), and the same driver has an ``AsyncConnection`` for callers that can await.

The tables (created at the first use, under an advisory lock, so several nodes starting at once do not race)::

    fay_audit       (seq PK, prev, hash, time, session, tenant, kind, turn, record jsonb, line)
                    line: the sealed JSON line exactly as hashed (``fay audit verify`` rehashes it);
                    record: the same record as jsonb for queries (NUL and lone surrogates made U+FFFD)
    fay_audit_head  one row: the seq and hash of the last record (the files' HEAD; its row lock orders writers)
    fay_reports     (tenant, session_id) PK, report jsonb, updated
    fay_declined    a view: each declined question with its session, tenant, turn, persona and time

A connection that fails is dropped and the next call opens a fresh one (``connect_timeout`` 3 s, statements and
lock waits capped at 5 s), so a dead database answers at once or within seconds, never hangs a turn for long.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from .errors import ConfigError

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)
T = TypeVar("T")

#: seconds to wait for a connection; statements and row locks are capped at 5 s on the server side
CONNECT_TIMEOUT_S = 3
_OPTIONS = "-c statement_timeout=5000 -c lock_timeout=5000 -c idle_in_transaction_session_timeout=10000"
_SCHEMA_LOCK = 0x6661795F6175  # pg_advisory_xact_lock key: "fay_au"

SCHEMA = """
CREATE TABLE IF NOT EXISTS fay_audit (
    seq     bigint PRIMARY KEY,
    prev    text NOT NULL,
    hash    text NOT NULL,
    time    timestamptz NOT NULL,
    session text,
    tenant  text,
    kind    text,
    turn    integer,
    record  jsonb NOT NULL,
    line    text NOT NULL
);
CREATE INDEX IF NOT EXISTS fay_audit_session ON fay_audit (session, seq);
CREATE INDEX IF NOT EXISTS fay_audit_time ON fay_audit (time);
CREATE TABLE IF NOT EXISTS fay_audit_head (
    id   integer PRIMARY KEY CHECK (id = 1),
    seq  bigint NOT NULL,
    hash text NOT NULL
);
INSERT INTO fay_audit_head (id, seq, hash) VALUES (1, 0, repeat('0', 64)) ON CONFLICT (id) DO NOTHING;
CREATE TABLE IF NOT EXISTS fay_reports (
    tenant     text NOT NULL,
    session_id text NOT NULL,
    report     jsonb NOT NULL,
    updated    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, session_id)
);
CREATE OR REPLACE VIEW fay_declined AS
    SELECT a.time, a.session, a.tenant, a.turn, a.record->>'persona' AS persona, u.record->>'text' AS question,
           a.record->>'text' AS answer, a.seq
    FROM fay_audit a
    LEFT JOIN LATERAL (SELECT record FROM fay_audit q WHERE q.session = a.session AND q.turn = a.turn
                       AND q.kind = 'user' AND q.seq < a.seq ORDER BY q.seq DESC LIMIT 1) u ON true
    WHERE a.kind = 'answer' AND a.record->>'declined' = 'true';
"""


def safe_url(url: str) -> str:
    """``url`` without its password, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def jsonb_safe(value: Any) -> Any:
    """``value`` with the strings ``jsonb`` cannot hold (NUL, lone surrogates) made U+FFFD, for the queryable
    copies (the audit's sealed ``line`` keeps the exact text)."""
    if isinstance(value, str):
        if "\x00" in value or any("\ud800" <= c <= "\udfff" for c in value):
            return "".join("\ufffd" if c == "\x00" or "\ud800" <= c <= "\udfff" else c for c in value)
        return value
    if isinstance(value, dict):
        return {str(k): jsonb_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonb_safe(v) for v in value]
    return value


def _lost(exc: Exception) -> bool:
    """Whether ``exc`` says the connection itself is gone (not a statement that failed on a live one)."""
    conn_error = getattr(exc, "sqlstate", None)
    return conn_error is None or conn_error.startswith("08") or conn_error in ("57P01", "57P02", "57P03")


def _driver() -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise ConfigError("audit.url names PostgreSQL but psycopg is not installed: pip install 'fay[postgres]'"
                          ) from exc
    return psycopg


class Database:
    """One connection to the record's database, shared by this process's threads (one transaction at a time).

    :param url: a ``postgresql://`` URL (libpq's form: user, password, host, port, database, parameters).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.where = safe_url(url)
        self._psycopg = _driver()
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._schema_ready = False

    @property
    def errors(self) -> tuple[type[Exception], ...]:
        """What the driver raises when the database cannot be reached or refuses (to turn into a clear error)."""
        return (self._psycopg.OperationalError, self._psycopg.InterfaceError)

    def _connect(self) -> psycopg.Connection[Any]:
        conn = self._psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S, options=_OPTIONS)
        if not self._schema_ready:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                cur.execute(SCHEMA)
            self._schema_ready = True
        return conn

    @contextlib.contextmanager
    def transaction(self, *, repeatable: bool = False) -> Iterator[psycopg.Cursor[Any]]:
        """A cursor in one transaction, committed when the block ends (rolled back if it raises).

        ``repeatable``: a REPEATABLE READ snapshot (a verification reads every row and the head as of one moment).
        A connection that failed is closed, and the next call opens a new one: a database restarted between two
        calls costs the first call an error, not every later one.
        """
        with self._lock:
            if self._conn is None or self._conn.closed:
                self._conn = self._connect()
            conn = self._conn
            try:
                with conn.transaction(), conn.cursor() as cur:
                    if repeatable:
                        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    yield cur
            except self.errors:
                self._drop()
                raise

    def run(self, work: Callable[[psycopg.Cursor[Any]], T], *, repeatable: bool = False) -> T:
        """``work(cursor)`` in one transaction; once more on a new connection if a kept one had died meanwhile (a
        restarted database): the failed try was rolled back (only a connection lost during the commit itself leaves it
        unknown whether the first try committed: an audit record may then appear twice, never not at all)."""
        with self._lock:
            stale = self._conn is not None and not self._conn.closed
        try:
            with self.transaction(repeatable=repeatable) as cur:
                return work(cur)
        except self.errors as exc:
            if not stale or isinstance(exc, self._psycopg.errors.QueryCanceled) or not _lost(exc):
                raise
            log.warning("the record's database %s dropped the connection (%s): reconnecting", self.where, exc)
        with self.transaction(repeatable=repeatable) as cur:
            return work(cur)

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        """Close the connection (the next transaction opens a new one)."""
        with self._lock:
            self._drop()
