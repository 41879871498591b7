"""Audit search and export from the console: the tenant's records, filtered, as JSON, JSON lines or CSV.

A search matches records of the caller's tenant by ``kind``, ``session``, a time range (``since``/``until``, ISO
dates or times, compared as text: the log writes UTC ISO times) and ``q``, words that must all appear (case
folded) in the record's text fields. The JSON-lines export holds the matching lines exactly as the log wrote them,
so their hashes can still be checked against the chain (``fay audit verify`` on the whole log); the CSV has the
columns of ``fay audit export --format csv``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..audit_cli import CSV_COLUMNS, csv_row
from ..errors import InvalidRequest
from .review import tenant_of

if TYPE_CHECKING:
    from ..record_store import AuditStore

#: the most records a search answers (an export has no limit)
MAX_RESULTS = 1000
_TEXT_FIELDS = ("text", "heard", "message", "error", "answered_by", "persona", "source")


@dataclass(frozen=True)
class Query:
    """What a search or an export matches."""

    tenant: str
    q: str = ""
    kind: str = ""
    session: str = ""
    since: str = ""
    until: str = ""

    @classmethod
    def of(cls, tenant: str, params: Any) -> Query:
        """From a request's query parameters (``q``, ``kind``, ``session``, ``since``, ``until``)."""
        values = {k: str(params.get(k, "")).strip() for k in ("q", "kind", "session", "since", "until")}
        for k in ("since", "until"):
            v = values[k]
            if v and not (len(v) >= 10 and v[:4].isdigit() and v[4] == "-" and v[7] == "-"):
                raise InvalidRequest(f"'{k}' must be an ISO date or time (2026-01-31 or 2026-01-31T09:00)")
        if len(values["q"]) > 200:
            raise InvalidRequest("'q' is at most 200 characters")
        return cls(tenant, **values)

    def matches(self, record: dict[str, Any]) -> bool:
        if tenant_of(record) != self.tenant:
            return False
        if self.kind and record.get("kind") != self.kind:
            return False
        if self.session and record.get("session") != self.session:
            return False
        when = str(record.get("time", ""))
        if self.since and when < self.since:
            return False
        if self.until and when[: len(self.until)] > self.until:
            return False
        if self.q:
            hay = " ".join(str(record.get(k, "")) for k in _TEXT_FIELDS).casefold()
            hay += " " + json.dumps(record.get("citations", []), ensure_ascii=False).casefold()
            return all(word in hay for word in self.q.casefold().split())
        return True


def raw_records(audit: AuditStore) -> Iterator[tuple[bytes, dict[str, Any]]]:
    """Every sealed line of the log (oldest first) with its record, from the files or the database."""
    for raw in audit.sealed():
        try:
            rec = json.loads(raw)
        except ValueError:
            continue  # a damaged line: fay audit verify reports it
        if isinstance(rec, dict):
            yield raw, rec


def search(audit: AuditStore, query: Query, limit: int = MAX_RESULTS) -> dict[str, Any]:
    """The newest ``limit`` matching records (newest first) and how many matched."""
    found = [rec for _raw, rec in raw_records(audit) if query.matches(rec)]
    return {"total": len(found), "records": found[::-1][:limit]}


def export(audit: AuditStore, query: Query, fmt: str) -> bytes:
    """The matching records, oldest first: ``jsonl`` (the lines as written) or ``csv``."""
    if fmt == "jsonl":
        return b"".join(raw + b"\n" for raw, rec in raw_records(audit) if query.matches(rec))
    if fmt != "csv":
        raise InvalidRequest("'format' must be jsonl or csv")
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for _raw, rec in raw_records(audit):
        if query.matches(rec):
            writer.writerow(csv_row(rec))
    return out.getvalue().encode("utf-8", errors="backslashreplace")
