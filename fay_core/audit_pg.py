"""The audit chain in PostgreSQL: the same sealed records as the JSON-lines files, one chain for every node.

Each record is sealed exactly as a file line is (:func:`fay_core.audit_chain.seal`: ``seq``, ``prev``, the record,
``hash`` last) and stored with those bytes in ``fay_audit.line``, so ``fay audit verify`` rehashes what was hashed;
``fay_audit.record`` holds the same record as ``jsonb`` for a bank's queries (``session``, ``tenant``, ``kind`` and
``turn`` also as columns), and :mod:`fay_core.pg` lists the tables.

**Several nodes, one chain.** A write locks the one row of ``fay_audit_head`` (``SELECT ... FOR UPDATE``), takes
its seq and hash as ``seq - 1`` and ``prev``, inserts the record and moves the head, in one transaction. So all
nodes' records form a single chain in commit order, with no gap and no fork (``seq`` is the primary key as a
second guard), and the head row is the anchor the files keep in ``HEAD``: a deleted last row shows as a log that
ends before its head. The price: writers of all nodes take turns on that row lock, for one round trip each (the
insert and the head update; about a millisecond on a LAN), which bounds the whole cluster to several hundred
records a second: ample for turns (two or three records each), and a per-node chain would make the bank's
question "what happened, in order" harder to answer for little gain below that.

**Record first.** :meth:`PgAuditLog.write` returns once the transaction is committed (PostgreSQL's own durability,
``synchronous_commit``), before the turn goes on; a database that cannot be reached or refuses raises
:class:`~fay_core.errors.AuditUnavailable` (the turn is refused with 503 and the record is logged, as with files).

**Retention** deletes the expired prefix of the chain (the rows before the first one younger than
``audit.retention_days``; never the last) in the same transaction that chains a ``retention`` record naming the
seq and hash of the last deleted row, so verification accepts a chain that starts there, and only there.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

from .audit_chain import CHAIN_FIELDS, GENESIS, Problem, Verified, parse_line, seal
from .errors import AuditUnavailable
from .pg import Database, jsonb_safe
from .settings import AuditSettings

log = logging.getLogger(__name__)

#: where verification problems point: ``fay_audit:<seq>``
TABLE = "fay_audit"


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class PgAuditLog:
    """The audit chain in the ``fay_audit`` table of ``db``: the interface of :class:`~fay_core.audit.AuditLog`.

    :param db: the record's database (:class:`~fay_core.pg.Database`).
    :param settings: retention and signing (``fsync`` is PostgreSQL's ``synchronous_commit`` here).
    :param now: the clock that stamps records (UTC ``datetime``).
    """

    def __init__(self, db: Database, settings: AuditSettings | None = None,
                 now: Callable[[], dt.datetime] | None = None) -> None:
        self.db = db
        self.settings = settings or AuditSettings()
        self._key = (self.settings.signing_key.get_secret_value().encode("utf-8")
                     if self.settings.signing_key is not None else None)
        self._now = now or _utc_now
        self._retention_day: dt.date | None = None

    @property
    def where(self) -> str:
        """The database, for messages (without its password)."""
        return self.db.where

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` (with the time) to the chain, committed before it returns.

        Raises :class:`AuditUnavailable` if it cannot be written, ``ValueError`` if ``record`` carries a chain field.
        """
        clash = [k for k in CHAIN_FIELDS if k in record]
        if clash:
            raise ValueError(f"an audit record may not carry {', '.join(clash)}: the audit log sets them")
        now = self._now()
        stamped = {"time": now.isoformat(timespec="milliseconds"), **record}
        try:
            self.db.run(lambda cur: self._append(cur, stamped, now))
        except self.db.errors as exc:
            line = json.dumps(stamped, ensure_ascii=False, default=str)
            log.error("audit database %s not writable: %s; record: %s", self.where, exc, line)
            raise AuditUnavailable(f"the audit database {self.where} cannot be written ({str(exc).strip()}): "
                                   "start it or fix FAY_AUDIT__URL; turns are refused until then") from exc
        self.apply_retention(daily=True)

    def _append(self, cur: Any, record: dict[str, Any], now: dt.datetime) -> tuple[int, str]:
        cur.execute("SELECT seq, hash FROM fay_audit_head WHERE id = 1 FOR UPDATE")
        last_seq, prev = cur.fetchone()
        seq = last_seq + 1
        line, h = seal(record, seq, prev, self._key)
        text = line[:-1].decode("utf-8")  # valid UTF-8: seal escapes lone surrogates
        turn = record.get("turn")
        cur.execute(
            "INSERT INTO fay_audit (seq, prev, hash, time, session, tenant, kind, turn, record, line) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (seq, prev, h, now, jsonb_safe(record.get("session")), jsonb_safe(record.get("tenant")),
             jsonb_safe(record.get("kind")), turn if isinstance(turn, int) else None,
             json.dumps(jsonb_safe({"seq": seq, "prev": prev, **record, "hash": h}), default=str), text))
        cur.execute("UPDATE fay_audit_head SET seq = %s, hash = %s WHERE id = 1", (seq, h))
        return seq, h

    def read(self, session_id: str | None = None) -> list[dict[str, Any]]:
        """All records (of one session, if given), oldest first: exactly as sealed."""
        def fetch(cur: Any) -> list[Any]:
            if session_id is None:
                cur.execute("SELECT line FROM fay_audit ORDER BY seq")
            else:
                cur.execute("SELECT line FROM fay_audit WHERE session = %s ORDER BY seq", (session_id,))
            return list(cur.fetchall())

        return [json.loads(row[0]) for row in self.db.run(fetch)]

    def sealed(self) -> list[bytes]:
        """Every record's sealed line, oldest first (the console's audit search and export)."""
        def fetch(cur: Any) -> list[Any]:
            cur.execute("SELECT line FROM fay_audit ORDER BY seq")
            return list(cur.fetchall())

        return [row[0].encode("utf-8") for row in self.db.run(fetch)]

    def lines(self, session_id: str) -> list[bytes]:
        """One session's sealed lines, oldest first (``fay audit export``: hashes verifiable)."""
        def fetch(cur: Any) -> list[Any]:
            cur.execute("SELECT line FROM fay_audit WHERE session = %s ORDER BY seq", (session_id,))
            return list(cur.fetchall())

        return [row[0].encode("utf-8") for row in self.db.run(fetch)]

    def apply_retention(self, daily: bool = False) -> list[str]:
        """Delete the records older than ``audit.retention_days`` (recorded first, in the same transaction);
        returns ``["seq 1..N"]`` for what went. ``daily``: only if no pass ran yet today. Never raises."""
        if self.settings.retention_days is None:
            return []
        now = self._now()
        if daily and self._retention_day == now.date():
            return []
        cutoff = now - dt.timedelta(days=self.settings.retention_days)
        try:
            self._retention_day = now.date()
            return self.db.run(lambda cur: self._retain(cur, now, cutoff))
        except self.db.errors as exc:
            log.error("audit retention in %s failed: %s", self.where, exc)
            return []

    def _retain(self, cur: Any, now: dt.datetime, cutoff: dt.datetime) -> list[str]:
        cur.execute("SELECT seq, hash FROM fay_audit_head WHERE id = 1 FOR UPDATE")
        head_seq, _ = cur.fetchone()
        # the expired prefix of the chain: everything before the first record that is not expired (a record stamped
        # by a clock set back stays while a newer one precedes it; the head is never deleted)
        cur.execute("SELECT coalesce(min(seq), %s) FROM fay_audit WHERE time >= %s", (head_seq, cutoff))
        keep_from = min(cur.fetchone()[0], head_seq)
        cur.execute("SELECT seq, hash FROM fay_audit WHERE seq < %s ORDER BY seq DESC LIMIT 1", (keep_from,))
        row = cur.fetchone()
        if row is None:
            return []
        last_seq, last_hash = row
        cur.execute("SELECT min(seq) FROM fay_audit")
        first = cur.fetchone()[0]
        record = {"time": now.isoformat(timespec="milliseconds"), "kind": "retention",
                  "deleted": [f"seq {first}..{last_seq}"], "retention_days": self.settings.retention_days,
                  "last_seq": last_seq, "last_hash": last_hash}
        self._append(cur, record, now)
        cur.execute("DELETE FROM fay_audit WHERE seq <= %s", (last_seq,))
        log.info("audit retention deleted records seq %s..%s (older than %d days)", first, last_seq,
                 self.settings.retention_days)
        return [f"seq {first}..{last_seq}"]

    def verify(self) -> Verified:
        """Check every record against the chain and the head row, as of one snapshot (see :func:`verify_rows`)."""
        def snapshot(cur: Any) -> tuple[list[tuple[int, bytes]], tuple[int, str]]:
            cur.execute("SELECT seq, hash FROM fay_audit_head WHERE id = 1")
            head = cur.fetchone()
            cur.execute("SELECT seq, line FROM fay_audit ORDER BY seq")
            return [(s, line.encode("utf-8")) for s, line in cur.fetchall()], (head[0], head[1])

        try:
            rows, head = self.db.run(snapshot, repeatable=True)
        except self.db.errors as exc:
            return Verified(0, 0, 0, 0, GENESIS, Problem("", 0, f"unreadable: {exc}"))
        return verify_rows(iter(rows), head, self._key)


def verify_rows(rows: Iterator[tuple[int, bytes]], head: tuple[int, str], key: bytes | None) -> Verified:
    """Check ``(seq column, line)`` rows in seq order against the chain and the ``(seq, hash)`` head.

    A problem names ``fay_audit:<seq>``. The chain may start after deleted rows only where a ``retention`` record
    names that start; the last record must be the head's.
    """
    count, first_seq, seq, prev = 0, 0, 0, GENESIS
    retention: list[dict[str, Any]] = []
    first_prev = GENESIS

    def broken(at: int, why: str) -> Verified:
        return Verified(1, count, first_seq, seq, prev, Problem(TABLE, at, why))

    for column_seq, raw in rows:
        record, bad = parse_line(raw, key)
        if bad is not None:
            return broken(column_seq, bad)
        if record["seq"] != column_seq:
            return broken(column_seq, f"the row's seq column says {column_seq}, its sealed line {record['seq']}")
        if count == 0:
            first_seq, first_prev = record["seq"], record["prev"]
        else:
            if record["seq"] != seq + 1:
                return broken(column_seq, f"seq gap: seq {record['seq']} follows {seq}")
            if record["prev"] != prev:
                return broken(column_seq, f"prev mismatch: not the hash of seq {seq}")
        if record.get("kind") == "retention":
            retention.append(record)
        count += 1
        seq, prev = record["seq"], record["hash"]
    if count and first_prev == GENESIS and first_seq != 1:
        return broken(first_seq, f"seq gap: the chain starts at seq {first_seq}, not 1")
    if count and first_prev != GENESIS and not any(
            r.get("last_seq") == first_seq - 1 and r.get("last_hash") == first_prev for r in retention):
        return broken(first_seq, f"missing records: the chain starts at seq {first_seq} after records no retention "
                                 "record accounts for (rows deleted by hand?)")
    head_seq, head_hash = head
    if head_seq > seq:
        return broken(seq + 1, f"truncated tail vs head: fay_audit_head names seq {head_seq}, the log ends at "
                               f"seq {seq}")
    if head_seq == seq and count and head_hash != prev:
        return broken(seq, f"head mismatch: fay_audit_head holds another hash for seq {seq}")
    if head_seq < seq:
        return broken(head_seq + 1, f"rows after the head: fay_audit_head names seq {head_seq}, the log goes on "
                                    f"to seq {seq} (inserted by hand?)")
    return Verified(1, count, first_seq, seq, prev, None)
