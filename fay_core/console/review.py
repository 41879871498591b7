"""What the console reads from the audit log: turns, conversations, transcripts, and the charts' series.

The audit log (:mod:`fay_core.audit`) writes a ``user`` record when a turn starts and an ``answer`` record when it
ends (text, sources, tools, latency marks, ``declined`` and ``unsure``); the console pairs them into
:class:`TurnView` rows. Answers recorded before ``declined`` was written count as declined when the offline
answerer or the guardrail cited nothing (see :func:`_declined_before`). Records carry their tenant (those written
before tenants existed belong to ``default``), and a tenant sees only its own. The texts are as the audit log
holds them: personal data already masked.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ..audit import AuditLog
from ..audit_chain import file_names
from ..tenancy import DEFAULT_TENANT

if TYPE_CHECKING:
    from ..record_store import AuditStore

#: the latency mark the charts plot: when the first words of the answer were ready (text and voice turns alike)
FIRST_TEXT = "agent_first_text"


@dataclass
class TurnView:
    """One turn of a conversation as the console shows it: the question, the answer and how it was reached."""

    session: str
    persona: str
    turn: int
    time: str
    question: str = ""
    source: str = "text"
    answer: str | None = None  #: ``None`` while the turn runs (or if the server stopped before it ended)
    answered_by: str = ""
    declined: bool = False
    unsure: bool = False
    interrupted: bool = False
    error: str = ""
    citations: list[dict[str, Any]] = field(default_factory=list)
    tools: list[dict[str, Any]] = field(default_factory=list)
    latency_ms: dict[str, float] = field(default_factory=dict)

    @property
    def day(self) -> str:
        return self.time[:10]

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class AuditCache:
    """The audit log's records: of the files, each day file parsed again only when it changed (the console
    refreshes often; old day files never change); of a database, read afresh each time."""

    def __init__(self, audit: AuditStore) -> None:
        self.audit = audit
        self.folder = audit.folder if isinstance(audit, AuditLog) else None
        self._files: dict[str, tuple[tuple[int, int], list[dict[str, Any]]]] = {}
        self._lock = threading.Lock()

    def records(self) -> list[dict[str, Any]]:
        """Every record, oldest first (complete lines only: one being written is read next time)."""
        if self.folder is None:
            return _parse(b"".join(raw + b"\n" for raw in self.audit.sealed()))
        out: list[dict[str, Any]] = []
        with self._lock:
            names = file_names(self.folder)
            for name in names:
                path = self.folder / name
                try:
                    st = path.stat()
                except FileNotFoundError:  # deleted by retention meanwhile
                    continue
                stamp = (st.st_size, st.st_mtime_ns)
                cached = self._files.get(name)
                if cached is None or cached[0] != stamp:
                    cached = self._files[name] = (stamp, _parse(path.read_bytes()))
                out.extend(cached[1])
            for gone in set(self._files) - set(names):
                del self._files[gone]
        return out


def _parse(data: bytes) -> list[dict[str, Any]]:
    out = []
    for raw in data.split(b"\n")[:-1]:
        try:
            rec = json.loads(raw)
        except ValueError:
            continue  # a damaged line: fay audit verify reports it
        if isinstance(rec, dict):
            out.append(rec)
    return out


def tenant_of(record: dict[str, Any]) -> str:
    return str(record.get("tenant") or DEFAULT_TENANT)


def turns(records: list[dict[str, Any]], tenant: str) -> list[TurnView]:
    """The tenant's turns in ``records`` (oldest first), each user record joined with its answer record."""
    out: dict[tuple[str, int], TurnView] = {}
    for r in records:
        kind = r.get("kind")
        if kind not in ("user", "answer") or tenant_of(r) != tenant or not isinstance(r.get("turn"), int):
            continue
        key = (str(r.get("session")), int(r["turn"]))
        view = out.get(key)
        if view is None:
            view = out[key] = TurnView(session=key[0], persona=str(r.get("persona", "")), turn=key[1],
                                       time=str(r.get("time", "")))
        if kind == "user":
            view.question, view.source, view.time = str(r.get("text", "")), str(r.get("source", "text")), \
                str(r.get("time", view.time))
        else:
            view.answer = str(r.get("text", ""))
            view.answered_by = str(r.get("answered_by", ""))
            view.declined = bool(r["declined"]) if "declined" in r else _declined_before(r)
            view.unsure = bool(r.get("unsure", False))
            view.interrupted = bool(r.get("interrupted", False))
            view.error = str(r.get("error") or "")
            view.citations = list(r.get("citations") or [])
            view.tools = list(r.get("tools") or [])
            view.latency_ms = {str(k): float(v) for k, v in (r.get("latency_ms") or {}).items()
                               if isinstance(v, int | float)}
    return [v for v in out.values() if v.question or v.answer is not None]


def _declined_before(record: dict[str, Any]) -> bool:
    """Whether an answer recorded before answers carried ``declined`` was one: the offline answerer and the
    guardrail cite nothing only when they hand off (an LLM's answer without sources may be a tool's, so it is not
    counted)."""
    return (record.get("answered_by") in ("offline", "guardrail", "fallback") and not record.get("citations")
            and not record.get("error") and not record.get("interrupted"))


def conversations(views: list[TurnView]) -> list[dict[str, Any]]:
    """One row per session, newest first: its persona, first and last time, turns, declines and low-confidence
    answers."""
    by: dict[str, dict[str, Any]] = {}
    for v in views:
        c = by.setdefault(v.session, {"session_id": v.session, "persona": v.persona, "started": v.time,
                                      "last": v.time, "turns": 0, "declined": 0, "unsure": 0})
        c["last"] = max(c["last"], v.time)
        c["started"] = min(c["started"], v.time)
        c["turns"] += 1
        c["declined"] += v.declined
        c["unsure"] += v.unsure
    return sorted(by.values(), key=lambda c: c["last"], reverse=True)


def transcript(records: list[dict[str, Any]], session_id: str) -> dict[str, Any]:
    """A session's review: its turns with answers, sources, tool calls and latency, and the other records (the
    disclosure, consent, errors) beside them, in order."""
    own = [r for r in records if r.get("session") == session_id]
    tenant = tenant_of(own[0]) if own else DEFAULT_TENANT
    views = turns(own, tenant)
    events = [{"time": r.get("time"), "kind": r.get("kind"), "turn": r.get("turn"),
               **{k: r[k] for k in ("via", "text", "message", "source", "recording", "heard") if k in r}}
              for r in own if r.get("kind") not in ("user", "answer")]
    persona = next((str(r["persona"]) for r in own if r.get("persona")), "")
    return {"session_id": session_id, "persona": persona, "tenant": tenant,
            "turns": [v.as_json() for v in views], "events": events}


def latest_latency(views: list[TurnView]) -> dict[str, float]:
    """The latency marks of each session's last finished turn."""
    out: dict[str, float] = {}
    for v in views:
        if v.answer is not None and FIRST_TEXT in v.latency_ms:
            out[v.session] = v.latency_ms[FIRST_TEXT]
    return out


def first_day(days: int, today: dt.date | None = None) -> str:
    """The first day (ISO) of the last ``days`` days, today (UTC) included."""
    today = today or dt.datetime.now(dt.UTC).date()
    return (today - dt.timedelta(days=days - 1)).isoformat()


def stats(views: list[TurnView], days: int, today: dt.date | None = None) -> dict[str, Any]:
    """The charts' series over the last ``days`` days: each finished turn's time to the first words of its answer
    (``latency``), and per day the turns, declines and low-confidence answers (``days``, every day present)."""
    today = today or dt.datetime.now(dt.UTC).date()
    first = today - dt.timedelta(days=days - 1)
    recent = [v for v in views if v.answer is not None and v.day >= first.isoformat()]
    latency = [{"time": v.time, "ms": round(v.latency_ms[FIRST_TEXT], 1), "session": v.session, "turn": v.turn}
               for v in recent if FIRST_TEXT in v.latency_ms]
    per_day: Counter[str] = Counter(v.day for v in recent)
    declined: Counter[str] = Counter(v.day for v in recent if v.declined)
    unsure: Counter[str] = Counter(v.day for v in recent if v.unsure)
    series = []
    for i in range(days):
        day = (first + dt.timedelta(days=i)).isoformat()
        series.append({"day": day, "turns": per_day[day], "declined": declined[day], "unsure": unsure[day]})
    return {"latency": latency, "days": series}
