"""The audit log: an append-only, hash-chained, fsynced JSON-lines record of every turn.

One file per day under ``<data_dir>/audit/``. The user's words are written when the turn starts, before any
answerer runs, and the answer (text, sources, tools, timings, persona version) when it ends, so a failing LLM or
a crash mid-answer still leaves what the user said on record: each record is written, flushed and ``fsync``-ed
(``audit.fsync``, on by default) before :meth:`AuditLog.write` returns, so it survives a killed server and a power
cut alike.

**The chain.** Each record carries ``seq`` (1, 2, ... across all day files), ``prev`` (the previous record's
hash) and ``hash`` (SHA-256 of the exact bytes of the line without its hash, see :mod:`fay_core.audit_chain`),
so ``fay audit verify`` finds a changed, deleted, inserted or reordered line, and a deleted day file, at its
``FILE:LINE``. The chain runs across day files and across restarts: the writer takes the last record of the
newest file as its ``prev``. Several processes may share one folder: reading that tail and appending happen
under an exclusive ``flock`` on ``<folder>/.lock``, so their records form one chain (``fay audit verify`` reads
under a shared one, so it never sees half a line).

**The anchor.** ``<folder>/HEAD`` holds the seq and hash of the last record written (overwritten in place after
each record's fsync). A log that ends before HEAD's seq was cut short (a truncated file, lost last lines, a deleted
newest file), which the chain alone cannot see: nothing follows the last line to break. A writer that finds the
log behind HEAD goes on from HEAD, so the gap stays visible. HEAD proves the log reached *at least* that record;
it is not fsynced itself (that would double a write's cost), so after a power cut it may lag the log, which
verification accepts; with ``audit.fsync`` it never names a record that was not on disk first. It does not prove
more: whoever can write the folder can also rewrite HEAD to match a shortened log.

**What a plain hash chain does not protect against.** Anyone who can write the folder can change a record and
recompute every later hash (and HEAD): the chain then verifies. It detects accidents and careless edits, not a
deliberate forger. Two fixes, which combine: set ``audit.signing_key`` (a secret kept away from the folder's
writers, e.g. in the server's environment only): ``hash`` is then an HMAC-SHA256 under that key, and a chain
recomputed without the key fails verification; and copy the end of the chain (``fay audit verify`` prints the last
seq and hash) somewhere the server cannot rewrite (a WORM store, a ticket, a syslog host), so even a key holder
cannot rewrite what came before a copied hash. Verify a signed log with the same key (``FAY_AUDIT__SIGNING_KEY``);
a log that was unsigned before the key was set verifies only up to that point (start a new folder when enabling it).

**Retention.** With ``audit.retention_days``, whole day files older than that are deleted, at the first write and
then once a day, also on an idle server (never the newest file). The deletion is first recorded in the chain
(``kind: "retention"``, the file names and the seq and hash of their last record), so verification accepts a chain
that starts where a retention record says, and still reports a file deleted by anyone else.

**When a record cannot be written**, :meth:`AuditLog.write` raises :class:`~fay_core.errors.AuditUnavailable`
(and logs the record, so it is not lost) rather than spooling it: a spool on the same full or read-only disk fails
the same way, and one in memory dies with the process. A bank must not answer what it cannot put on record, so
the turn is refused (HTTP 503) until the audit folder is writable again, and the log's error is the alarm.

Every text the server accepted can be recorded: the JSON lines keep Chinese and other text readable (UTF-8,
``ensure_ascii=False``), and a lone surrogate (``"\\ud800"``, which UTF-8 cannot encode) is written as its JSON
escape ``\\ud800`` (``backslashreplace``), so the line stays valid JSON and reads back as the same string; the hash
covers those bytes.

**Cost.** One fsync per record, paid by the caller (the event loop: two or three records a turn).
``python bench/audit.py`` (1.2 KB records) measured on the development machine, a shared virtual disk: one
writer p50 0.2-0.3 ms, p95 0.3-1.7 ms when the disk was quiet, p50 1-4 ms, p95 4-8 ms while other jobs loaded it;
without fsync p50 0.12 ms, p95 0.2 ms. The fsync runs outside the locks, so concurrent writers (threads, or
processes sharing the folder) commit as a group: one flush carries every line appended before it, and each
``write`` still returns only once its own line is on disk (four threads: p95 1.6-4.4 ms, against 15-28 ms with
the fsync under the lock). A server's event loop writes one record at a time, so there it has nothing to batch;
only ``audit.fsync: false`` would take the fsync off the turn: a killed server still loses nothing (the page cache
holds the records), a power cut or kernel crash loses what the kernel had not written back (by default up to
about 30 s of records).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .audit_chain import CHAIN_FIELDS, GENESIS, HEAD_NAME, Verified, file_names, read_head, seal, verify
from .errors import AuditUnavailable
from .settings import AuditSettings

log = logging.getLogger(__name__)

_TAIL_BYTES = 64 * 1024
_HEAD_BYTES = 256


@dataclass(slots=True)
class _Tail:
    """The last record of the chain: its seq and hash, and the file (name, inode, size) it ends."""

    seq: int
    hash: str
    file: str
    ino: int
    size: int


@dataclass(slots=True)
class _Written:
    """A record appended to its file and not yet committed: the open file, its seq, hash and file name."""

    fd: int
    seq: int
    hash: str
    name: str
    new_file: bool


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _last_line(f: BinaryIO, size: int) -> tuple[bytes | None, bool]:
    """The last line of an open file (without its newline; ``None`` if empty), and whether it is torn (no
    newline: a write cut short)."""
    if size == 0:
        return None, False
    chunk = _TAIL_BYTES
    while True:
        start = max(0, size - chunk)
        f.seek(start)
        data = f.read(size - start)
        torn = not data.endswith(b"\n")
        body = data if torn else data[:-1]
        cut = body.rfind(b"\n")
        if cut >= 0 or start == 0:
            return body[cut + 1:], torn
        chunk *= 4


class AuditLog:
    """Appends chained records to ``<folder>/YYYY-MM-DD.jsonl``; safe to share between sessions, threads and
    processes.

    :param folder: the audit folder (created on the first write).
    :param settings: fsync, retention and signing (defaults: fsync on, keep everything, unsigned).
    :param now: the clock that stamps records and picks the day file (UTC ``datetime``).
    """

    def __init__(self, folder: Path, settings: AuditSettings | None = None,
                 now: Callable[[], dt.datetime] | None = None) -> None:
        self.folder = Path(folder)
        self.settings = settings or AuditSettings()
        self._key = (self.settings.signing_key.get_secret_value().encode("utf-8")
                     if self.settings.signing_key is not None else None)
        self._now = now or _utc_now
        self._lock = threading.Lock()
        self._tail: _Tail | None = None  # a cache, trusted only while the file it names is unchanged
        self._retention_day: dt.date | None = None

    def path_for(self, day: dt.date) -> Path:
        """The day file of ``day`` (records go to the newest file if the clock was set back)."""
        return self.folder / f"{day.isoformat()}.jsonl"

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` (with the time) to the chain, on disk before it returns.

        Raises :class:`AuditUnavailable` if it cannot be written, ``ValueError`` if ``record`` carries a chain
        field (``seq``, ``prev``, ``hash``).
        """
        clash = [k for k in CHAIN_FIELDS if k in record]
        if clash:
            raise ValueError(f"an audit record may not carry {', '.join(clash)}: the audit log sets them")
        now = self._now()
        stamped = {"time": now.isoformat(timespec="milliseconds"), **record}
        try:
            with self._lock, self._locked():
                written = self._append(stamped, now.date())
            self._commit(written)
        except OSError as exc:
            self._tail = None
            line = json.dumps(stamped, ensure_ascii=False, default=str)
            log.error("audit log %s not writable: %s; record: %s", self.folder, exc, line)
            raise AuditUnavailable(f"audit log {self.folder} is not writable ({exc}): fix its folder's permissions "
                                   "or space; turns are refused until then") from exc
        self.apply_retention(daily=True)

    def read(self, session_id: str | None = None) -> list[dict[str, Any]]:
        """All records (of one session, if given), oldest first."""
        out = []
        for name in file_names(self.folder):
            for line in (self.folder / name).read_text(encoding="utf-8").splitlines():
                rec = json.loads(line)
                if session_id is None or rec.get("session") == session_id:
                    out.append(rec)
        return out

    def sealed(self) -> list[bytes]:
        """Every complete line of the chain, oldest first, exactly as written (a line being written is left out)."""
        return [raw for name in file_names(self.folder)
                for raw in (self.folder / name).read_bytes().split(b"\n")[:-1] if raw.strip()]

    def verify(self) -> Verified:
        """Check the folder's chain and HEAD (:func:`fay_core.audit_chain.verify`, with this log's key)."""
        return verify(self.folder, self._key)

    def apply_retention(self, daily: bool = False) -> list[str]:
        """Delete the day files older than ``audit.retention_days`` (recorded first); returns their names.

        ``daily``: only if no pass ran yet today (cheap to call often: the server calls it every minute, so files
        expire on an idle server too). Never raises: a failure is logged and the next pass tries again.
        """
        if self.settings.retention_days is None:
            return []
        now = self._now()
        if daily and self._retention_day == now.date():
            return []
        try:
            with self._lock, self._locked():
                self._retention_day = now.date()
                return self._retain(now)
        except OSError as exc:
            log.error("audit retention in %s failed: %s", self.folder, exc)
            return []

    # --- under the locks -----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / ".lock", os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the flock

    def _append(self, record: dict[str, Any], day: dt.date) -> _Written:
        """Add ``record`` to the chain and its line to the file (the page cache); :meth:`_commit` makes it durable."""
        names = file_names(self.folder)
        tail = self._current_tail(names)
        # never append to a file older than the newest one (a clock set back): the chain runs in file order
        name = max(self.path_for(day).name, names[-1]) if names else self.path_for(day).name
        seq, prev = (tail.seq + 1, tail.hash) if tail else (1, GENESIS)
        line, h = seal(record, seq, prev, self._key)
        fd = os.open(self.folder / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view):]
            st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        self._tail = _Tail(seq, h, name, st.st_ino, st.st_size)
        return _Written(fd, seq, h, name, name not in names)

    def _commit(self, written: _Written, locked: bool = False) -> None:
        """fsync a written record, then name it in HEAD.

        Called outside the locks (``locked`` False), so that concurrent writers' fsyncs overlap: one flush of the
        file carries every line appended before it (group commit), while each ``write`` still returns only once
        its own line is on disk.
        """
        try:
            if self.settings.fsync:
                os.fsync(written.fd)
                if written.new_file:
                    self._sync_folder()  # the new file's name is on disk too
        finally:
            os.close(written.fd)
        if locked:
            self._advance_head(written)
        else:
            with self._lock, self._locked():
                self._advance_head(written)

    def _advance_head(self, written: _Written) -> None:
        """HEAD names ``written`` unless it names a later record already (another writer's fsync ended first)."""
        try:
            head = read_head(self.folder)
        except ValueError:
            head = None
        if head is None or head["seq"] < written.seq:
            self._write_head(written.seq, written.hash, written.name)

    def _current_tail(self, names: list[str]) -> _Tail | None:
        """The last record of the chain: from the cache if the newest file is the one it ends, unchanged."""
        cached = self._tail
        if cached is not None and names and names[-1] == cached.file:
            with contextlib.suppress(FileNotFoundError):
                st = os.stat(self.folder / cached.file)
                if st.st_ino == cached.ino and st.st_size == cached.size:
                    return cached
        return self._read_tail(names)

    def _read_tail(self, names: list[str], anchored: bool = True) -> _Tail | None:
        """The last record of the newest of ``names`` that has one (another process may have appended since).

        ``anchored``: if HEAD names a later record than the files hold (records lost or removed), go on from HEAD
        instead, so that the next record shows the gap to verification rather than hiding it.
        """
        tail = None
        for name in reversed(names):
            path = self.folder / name
            with path.open("rb") as f:
                st = os.fstat(f.fileno())
                last, torn = _last_line(f, st.st_size)
            if torn and last is not None:
                self._repair_torn(path, last, st.st_size)
                return self._read_tail(names, anchored)
            if last is None:
                continue  # an empty file (created, then a crash before its first record)
            try:
                rec = json.loads(last)
                tail = _Tail(int(rec["seq"]), str(rec["hash"]), name, st.st_ino, st.st_size)
            except (ValueError, KeyError, TypeError) as exc:
                log.error("audit file %s ends with a line outside the hash chain (%s): the chain goes on from HEAD "
                          "if there is one; `fay audit verify` names the line", path, exc)
            break
        if not anchored:
            return tail
        try:
            head = read_head(self.folder)
        except ValueError as exc:
            log.error("audit HEAD in %s unreadable (%s): it is rewritten with the next record", self.folder, exc)
            return tail
        if head is not None and (tail is None or head["seq"] > tail.seq):
            log.error("audit log %s ends at seq %s but HEAD names seq %s: records were lost or removed; the chain "
                      "goes on from HEAD, so `fay audit verify` shows the gap", self.folder,
                      tail.seq if tail else "(none)", head["seq"])
            return _Tail(head["seq"], head["hash"], "", 0, 0)
        return tail

    def _repair_torn(self, path: Path, fragment: bytes, size: int) -> None:
        """Cut a torn last line (a write that never returned: power lost mid-write), keeping it in the log."""
        log.error("audit file %s ends with a torn line (%d bytes, a write interrupted by a crash): moved into a "
                  "'torn' record", path, len(fragment))
        with path.open("r+b") as f:
            f.truncate(size - len(fragment))
            os.fsync(f.fileno())
        self._tail = None
        tail = self._read_tail(file_names(self.folder))
        torn = {"time": self._now().isoformat(timespec="milliseconds"), "kind": "torn",
                "file": path.name, "text": fragment.decode("utf-8", "backslashreplace")}
        seq, prev = (tail.seq + 1, tail.hash) if tail else (1, GENESIS)
        line, h = seal(torn, seq, prev, self._key)
        with path.open("ab") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self._write_head(seq, h, path.name)

    def _write_head(self, seq: int, h: str, name: str) -> None:
        """Overwrite HEAD in place, at a fixed length (one disk sector: no torn or half-replaced anchor).

        Not fsynced: it is written after the record's fsync, so it never names a record that is not on disk, and
        a second fsync per record would double the cost (``bench/audit.py``); after a power cut it may lag the
        log by the records of the kernel's last writeback interval, which verification accepts.
        """
        text = json.dumps({"seq": seq, "hash": h, "file": name}).encode("ascii")
        fd = os.open(self.folder / HEAD_NAME, os.O_WRONLY | os.O_CREAT, 0o640)
        try:
            os.pwrite(fd, text.ljust(_HEAD_BYTES - 1) + b"\n", 0)
        finally:
            os.close(fd)

    def _sync_folder(self) -> None:
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _retain(self, now: dt.datetime) -> list[str]:
        """Record, then delete, the day files older than ``retention_days`` (never the newest)."""
        assert self.settings.retention_days is not None
        cutoff = self.path_for(now.date() - dt.timedelta(days=self.settings.retention_days)).name
        names = file_names(self.folder)
        expired = [n for n in names[:-1] if n < cutoff]
        if not expired:
            return []
        last = self._read_tail(expired, anchored=False)  # the last deleted record: where the kept chain starts
        record = {"time": now.isoformat(timespec="milliseconds"), "kind": "retention", "deleted": expired,
                  "retention_days": self.settings.retention_days,
                  "last_seq": last.seq if last else 0, "last_hash": last.hash if last else GENESIS}
        self._commit(self._append(record, now.date()), locked=True)  # on disk before any file goes
        for name in expired:
            try:
                (self.folder / name).unlink()
            except OSError as exc:  # recorded as deleted; the next pass tries again
                log.error("audit retention could not delete %s: %s", self.folder / name, exc)
        log.info("audit retention deleted %d day file(s) older than %d days: %s", len(expired),
                 self.settings.retention_days, ", ".join(expired))
        return expired
