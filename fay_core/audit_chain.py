"""The audit log's hash chain: how a record line is sealed, and how a folder of them is verified.

A line is one JSON object whose chain fields come first and whose hash comes last::

    {"seq": 7, "prev": "<hash of record 6>", "time": "...", "session": "...", ..., "hash": "<64 hex>"}

``hash`` is SHA-256 (or, with ``audit.signing_key``, HMAC-SHA256 under that key) of the exact UTF-8 bytes of the
line without its hash: everything before ``, "hash": "`` plus the closing ``}``. The writer serializes once and
the verifier hashes those same bytes back from the file, so no re-serialization (key order, escapes, the
``backslashreplace`` escape of a lone surrogate) can make an untouched line fail or a changed one pass.

``seq`` counts records from 1 across every day file and ``prev`` is the previous record's hash (64 zeros before the
first), so a changed, deleted, inserted or reordered line breaks the chain at that line, and a deleted day file
breaks it at the first line of the next one. The end of the chain is anchored by the ``HEAD`` file (see
:mod:`fay_core.audit`), which catches a log cut short. Files deleted by retention are accounted for by a chained
``retention`` record naming them and the seq and hash of their last record.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: the ``prev`` of the first record of a chain
GENESIS = "0" * 64
#: the file that anchors the end of the chain: the seq and hash of the last record written
HEAD_NAME = "HEAD"
#: the fields the chain adds to a record (a record handed to the log may not carry them)
CHAIN_FIELDS = ("seq", "prev", "hash")

_SEAL = re.compile(rb'^(\{.*), "hash": "([0-9a-f]{64})"\}$', re.DOTALL)


def digest(body: bytes, key: bytes | None) -> str:
    """The hash of a line's ``body`` bytes: HMAC-SHA256 under ``key`` if given, else SHA-256."""
    if key is not None:
        return hmac.new(key, body, hashlib.sha256).hexdigest()
    return hashlib.sha256(body).hexdigest()


def seal(record: dict[str, Any], seq: int, prev: str, key: bytes | None) -> tuple[bytes, str]:
    """The line (with its newline) that records ``record`` as number ``seq`` after ``prev``, and its hash.

    Text stays readable (``ensure_ascii=False``); a lone surrogate is written as its JSON escape
    (``backslashreplace``), so the line is valid JSON and its bytes are what the hash covers.
    """
    text = json.dumps({"seq": seq, "prev": prev, **record}, ensure_ascii=False, default=str)
    body = text.encode("utf-8", "backslashreplace")
    h = digest(body, key)
    return body[:-1] + b', "hash": "' + h.encode("ascii") + b'"}\n', h


def file_names(folder: Path) -> list[str]:
    """The day files of ``folder`` (``YYYY-MM-DD.jsonl``), oldest first."""
    try:
        with os.scandir(folder) as entries:  # a DirEntry knows its type without a stat per file
            return sorted(e.name for e in entries if e.name.endswith(".jsonl") and e.is_file())
    except FileNotFoundError:
        return []


def read_head(folder: Path) -> dict[str, Any] | None:
    """The ``HEAD`` anchor of ``folder`` (see :func:`parse_head`), or ``None`` if there is none."""
    try:
        raw = (folder / HEAD_NAME).read_bytes()
    except FileNotFoundError:
        return None
    return parse_head(raw)


def parse_head(raw: bytes) -> dict[str, Any]:
    """``{"seq", "hash", "file"}`` from HEAD's bytes; raises ``ValueError`` if they are not that."""
    head = json.loads(raw)
    if not isinstance(head, dict) or not isinstance(head.get("seq"), int) or not isinstance(head.get("hash"), str):
        raise ValueError("HEAD is not {seq, hash, file}")
    return head


@dataclass(frozen=True, slots=True)
class Problem:
    """The first place the chain breaks: ``file:line`` (1-based; 0: the file as a whole, ``""``: the folder) and
    why."""

    file: str
    line: int
    why: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.why}"


@dataclass(frozen=True, slots=True)
class Verified:
    """What :func:`verify` found: the files and records read, the last record, and the first problem if any."""

    files: int
    records: int
    first_seq: int
    last_seq: int
    last_hash: str
    problem: Problem | None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def summary(self) -> str:
        if self.problem is not None:
            return f"BROKEN {self.problem}"
        if not self.records:
            return f"ok: {self.files} files, no records"
        return (f"ok: {self.files} files, {self.records} records (seq {self.first_seq}..{self.last_seq}, "
                f"last hash {self.last_hash})")


class _Broken(Exception):
    def __init__(self, problem: Problem) -> None:
        self.problem = problem


def parse_line(raw: bytes, key: bytes | None) -> tuple[dict[str, Any], str | None]:
    """The record of one line (without its newline) and, if its hash is wrong, why."""
    try:
        record = json.loads(raw)
    except ValueError as exc:
        return {}, f"bad JSON ({exc})"
    match = _SEAL.match(raw)
    if isinstance(record, dict) and "hash" not in record:
        return {}, "not chained (no seq, prev, hash: written before the hash chain, or added by hand)"
    if not isinstance(record, dict) or match is None:
        return {}, 'bad JSON (not a sealed record: "hash" is not its last field)'
    if not isinstance(record.get("seq"), int) or not isinstance(record.get("prev"), str):
        return {}, "bad JSON (no seq or prev)"
    body = match.group(1) + b"}"
    stored = match.group(2).decode("ascii")
    if hmac.compare_digest(digest(body, key), stored):
        return record, None
    if key is None:
        return record, "hash mismatch (the line was changed, or the log is signed: set audit.signing_key)"
    if hmac.compare_digest(digest(body, None), stored):
        return record, "hash mismatch (a plain SHA-256, not the HMAC of audit.signing_key: recomputed without the key?)"
    return record, "hash mismatch (the line was changed, or signed with another key)"


@dataclass(frozen=True, slots=True)
class _Snapshot:
    sizes: dict[str, int]  # day file -> bytes written when the snapshot was taken
    head: bytes | None


def _snapshot(folder: Path) -> _Snapshot:
    """The day files' sizes and HEAD at one moment: under a shared lock if the folder has a writer's lock file,
    so a record being appended is neither half-read nor counted before HEAD names it."""
    try:
        fd: int | None = os.open(folder / ".lock", os.O_RDONLY)
    except OSError:  # a copied folder, or a reader without access to the lock: no writer to wait for
        fd = None
    try:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_SH)
        sizes = {name: (folder / name).stat().st_size for name in file_names(folder)}
        try:
            head = (folder / HEAD_NAME).read_bytes()
        except FileNotFoundError:
            head = None
        return _Snapshot(sizes, head)
    finally:
        if fd is not None:
            os.close(fd)


def _lines(folder: Path, sizes: dict[str, int]) -> Iterator[tuple[str, int, bytes]]:
    for name, size in sizes.items():
        try:
            with (folder / name).open("rb") as f:
                data = f.read(size)
        except FileNotFoundError:
            raise _Broken(Problem(name, 0, "file deleted while it was verified (retention?): verify again")) from None
        if data and not data.endswith(b"\n"):
            data += b"\n"  # a torn last line: reported as bad JSON
        for i, raw in enumerate(data.split(b"\n")[:-1], 1):
            yield name, i, raw


def verify(folder: Path, key: bytes | None = None) -> Verified:
    """Check every record of ``folder`` against the chain and ``HEAD``; the first break is ``problem``.

    A chain may start after deleted files only where a ``retention`` record of the same chain names that start
    (the seq and hash of the last deleted record); anything else missing at the start is reported too.
    """
    snap = _snapshot(folder)
    names = list(snap.sizes)
    count, first_seq, first_prev, first_at = 0, 0, GENESIS, ("", 0)
    seq, prev, where = 0, GENESIS, ("", 0)
    at_seq: dict[int, tuple[str, str, int]] = {}  # seq -> hash, file, line: only for HEAD (kept small below)
    retention: list[dict[str, Any]] = []
    try:
        for name, lineno, raw in _lines(folder, snap.sizes):
            record, bad = parse_line(raw, key)
            if bad is not None:
                raise _Broken(Problem(name, lineno, bad))
            if count == 0:
                first_seq, first_prev, first_at = record["seq"], record["prev"], (name, lineno)
            else:
                if record["seq"] != seq + 1:
                    kind = "missing records before this file (a deleted file?)" if lineno == 1 else "seq gap"
                    raise _Broken(Problem(name, lineno, f"{kind}: seq {record['seq']} follows {seq} "
                                                        f"({where[0]}:{where[1]})"))
                if record["prev"] != prev:
                    raise _Broken(Problem(name, lineno, f"prev mismatch: not the hash of seq {seq} "
                                                        f"({where[0]}:{where[1]})"))
            if record.get("kind") == "retention":
                retention.append(record)
            count += 1
            seq, prev, where = record["seq"], record["hash"], (name, lineno)
            at_seq[seq] = (prev, name, lineno)
            if len(at_seq) > 4096:
                at_seq.pop(next(iter(at_seq)))
        if count:
            _check_start(first_seq, first_prev, first_at, names, retention)
        _check_head(snap.head, count, seq, where, at_seq, names)
    except _Broken as broken:
        return Verified(len(names), count, first_seq, seq, prev, broken.problem)
    except OSError as exc:
        return Verified(len(names), count, first_seq, seq, prev, Problem("", 0, f"unreadable: {exc}"))
    return Verified(len(names), count, first_seq, seq, prev, None)


def _check_start(first_seq: int, first_prev: str, at: tuple[str, int], names: list[str],
                 retention: list[dict[str, Any]]) -> None:
    if first_prev == GENESIS:
        if first_seq != 1:
            raise _Broken(Problem(*at, f"seq gap: the chain starts at seq {first_seq}, not 1"))
        return
    for r in retention:
        if r.get("last_seq") == first_seq - 1 and r.get("last_hash") == first_prev:
            deleted = r.get("deleted") or []
            if all(isinstance(n, str) and n < at[0] for n in deleted):
                return
    raise _Broken(Problem(*at, f"missing file: the chain starts at seq {first_seq} after records no retention "
                               "record accounts for (a file deleted by hand?)"))


def _check_head(raw: bytes | None, count: int, seq: int, where: tuple[str, int],
                at_seq: dict[int, tuple[str, str, int]], names: list[str]) -> None:
    end = where if count else (names[-1] if names else HEAD_NAME, 0)
    try:
        head = parse_head(raw) if raw is not None else None
    except ValueError as exc:
        raise _Broken(Problem(HEAD_NAME, 1, f"bad HEAD ({exc})")) from None
    if head is None:
        if count:
            raise _Broken(Problem(*end, "HEAD missing: the end of the log cannot be checked (deleted?)"))
        return
    if head["seq"] > seq:
        raise _Broken(Problem(end[0], end[1] + 1 if count else 0,
                              f"truncated tail vs HEAD: HEAD names seq {head['seq']}, the log ends at seq {seq}"))
    known = at_seq.get(head["seq"])
    if known is not None and known[0] != head["hash"]:
        raise _Broken(Problem(known[1], known[2], f"HEAD mismatch: HEAD holds another hash for seq {head['seq']}"))
