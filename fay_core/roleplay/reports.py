"""Role-play reports: the transcript of a scenario session, its scorecard, and a trainer's overrides, on disk.

When a scenario ends (:class:`~fay_core.events.ScenarioEnded`), and again when its session closes if it went on,
:class:`ReportWriter` builds the transcript from the session's history (what was said and heard) and the bus's
timings (voice: speech onset and end from the VAD, the avatar's playout start and end; text: when the message
arrived and when the answer was written), scores it (:func:`fay_core.roleplay.scoring.score_transcript`) and
stores it in :class:`ReportStore` under ``<data_dir>/reports/<tenant>/<session_id>.json``. The file is written
atomically (a temporary file, then a rename), so a crash leaves the old report or the new one. A scoring failure
never loses the report: the transcript is stored with ``scorecard: null`` and the error in ``error``.

The stored JSON::

    {"version": 1, "session_id", "tenant", "persona", "persona_name", "persona_version", "language", "trainee",
     "scenario": {"kind", "role", "difficulty", "goal", "time_limit_s", "steps": [{"id", "aim"}]},
     "started": <unix s>, "ended": <unix s>, "ended_reason": "completed" | "time_limit" | "session closed",
     "steps_visited": [...], "transcript": {"turns": [{"speaker", "text", "start_s", "end_s"}]},
     "scorecard": <Scorecard.to_dict()> | null, "error": null | "...",
     "overrides": {"<criterion>": {"score", "comment", "ai_score", "at"}}}

A trainer's override (:meth:`ReportStore.override`) sets a criterion's score with a comment; the AI's score stays
in the scorecard and is repeated beside the override. :func:`view` is what ``GET /api/sessions/{id}/report``
answers: the report, its ``final`` scores (overrides applied, total recomputed the scorecard's way) and ``trend``,
the same trainee's earlier reports of the same persona (a "trainee" is the optional id given when the session was
created; sessions without one have no trend).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidBody, ReportNotScored, UnknownCriterion, UnknownReport
from ..events import (
    AgentTextDelta,
    AgentTurnFinished,
    AvatarStartedSpeaking,
    AvatarStoppedSpeaking,
    Event,
    ScenarioEnded,
    UserStartedSpeaking,
    UserStoppedSpeaking,
    UserTextReceived,
)
from .transcript import Transcript, TranscriptTurn

if TYPE_CHECKING:
    from ..brain.history import History
    from ..bus import Bus
    from ..persona import Persona
    from .runner import ScenarioRunner

log = logging.getLogger(__name__)

VERSION = 1
#: what a session id must look like to name a report file
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
#: the longest trainer comment kept
MAX_COMMENT = 2000
#: one read-modify-write of a report file at a time in this process (an override and a rewrite on close)
_FILES = threading.RLock()


class ReportStore:
    """Reports under ``root/<tenant>/<session_id>.json`` (see the module docstring).

    The interface of every report store (:class:`~fay_core.roleplay.reports_pg.PgReportStore` keeps them in
    PostgreSQL): :meth:`load`, :meth:`save`, :meth:`override` and :meth:`of_tenant`.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, tenant: str, session_id: str) -> Path:
        if not SESSION_ID.fullmatch(session_id):
            raise UnknownReport(f"no report for session {session_id[:140]!r}: not a session id")
        return self.root / tenant / f"{session_id}.json"

    def load(self, tenant: str, session_id: str) -> dict[str, Any]:
        """The stored report, or :class:`~fay_core.errors.UnknownReport` (another tenant's reads as unknown)."""
        try:
            data = json.loads(self.path(tenant, session_id).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UnknownReport(f"no report for session {session_id!r}: reports are written when a role-play "
                                "scenario ends (a persona whose scenario has steps)") from None
        if not isinstance(data, dict):
            raise UnknownReport(f"the report of session {session_id!r} is damaged (not a JSON object)")
        return data

    def save(self, report: dict[str, Any]) -> Path:
        """Write ``report`` atomically, keeping the overrides a stored copy already has."""
        with _FILES:
            return self._save(report)

    def _save(self, report: dict[str, Any]) -> Path:
        path = self.path(report["tenant"], report["session_id"])
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError, ValueError, UnknownReport):
            old = self.load(report["tenant"], report["session_id"])
            report = {**report, "overrides": {**old.get("overrides", {}), **report.get("overrides", {})}}
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(report, f, ensure_ascii=False, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return path

    def override(self, tenant: str, session_id: str, criterion: str, score: float, comment: str) -> dict[str, Any]:
        """Set a trainer's ``score`` of ``criterion`` with ``comment``; the AI's score is kept beside it."""
        with _FILES:
            return self._override(tenant, session_id, criterion, score, comment)

    def _override(self, tenant: str, session_id: str, criterion: str, score: float, comment: str
                  ) -> dict[str, Any]:
        report = self.load(tenant, session_id)
        card = report.get("scorecard")
        if not card:
            raise ReportNotScored(f"the report of session {session_id!r} has no scores to override (scoring failed: "
                                  f"{report.get('error') or 'unknown'}); score its transcript with `fay roleplay "
                                  "score`")
        item = next((c for c in card["criteria"] if c["criterion"] == criterion), None)
        if item is None:
            known = ", ".join(repr(c["criterion"]) for c in card["criteria"]) or "none"
            raise UnknownCriterion(f"no criterion {criterion!r} in this report (known: {known})")
        top = float(item.get("max_score", 10))
        if not math.isfinite(score) or not 0 <= score <= top:
            raise InvalidBody(f"'score' must be a number from 0 to {top:g} (the criterion's max_score)")
        report.setdefault("overrides", {})[criterion] = {
            "score": score, "comment": comment, "ai_score": item.get("score"), "at": time.time()}
        self.save(report)
        return report

    def of_tenant(self, tenant: str) -> list[dict[str, Any]]:
        """Every readable report of ``tenant`` (a damaged file is skipped and logged)."""
        out = []
        for path in sorted((self.root / tenant).glob("*.json")):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                log.warning("report %s cannot be read: %s", path, exc)
                continue
            if isinstance(data, dict):
                out.append(data)
        return out


def final_scores(report: dict[str, Any]) -> dict[str, Any]:
    """The scores with the trainer's overrides applied: ``{"criteria": {name: score}, "total"}``."""
    from .scorecard import Scorecard, total_of

    card = report.get("scorecard")
    if not card:
        return {"criteria": {}, "total": None}
    scorecard = Scorecard.from_dict(card)
    overrides = report.get("overrides") or {}
    for c in scorecard.criteria:
        if c.criterion in overrides:
            c.score = float(overrides[c.criterion]["score"])
    return {"criteria": {c.criterion: c.score for c in scorecard.criteria}, "total": total_of(scorecard.criteria)}


def view(store: ReportStore, tenant: str, session_id: str) -> dict[str, Any]:
    """What ``GET /api/sessions/{id}/report`` answers: the report, ``final`` and ``trend`` (module docstring)."""
    report = store.load(tenant, session_id)
    trend = []
    trainee = report.get("trainee")
    if trainee:
        for other in store.of_tenant(tenant):
            if other.get("trainee") == trainee and other.get("persona") == report.get("persona"):
                trend.append({"session_id": other.get("session_id"), "ended": other.get("ended"),
                              "total": final_scores(other)["total"], "current": other.get("session_id") == session_id})
        trend.sort(key=lambda r: r["ended"] or 0)
    return {**report, "final": final_scores(report), "trend": trend}


# --- building a report from a session ---------------------------------------------------------------------------


class TurnTimes:
    """When each turn was spoken, from the bus (monotonic seconds): the trainee's and the avatar's side."""

    EVENTS = (UserStartedSpeaking, UserStoppedSpeaking, UserTextReceived, AgentTextDelta, AgentTurnFinished,
              AvatarStartedSpeaking, AvatarStoppedSpeaking)

    def __init__(self) -> None:
        self.trainee: dict[int, list[float]] = {}
        self.avatar: dict[int, list[float]] = {}
        self.voiced: set[int] = set()  # turns whose avatar side the playout timed
        self.updates = 0  # timings taken so far (a report written before the last of them is out of date)
        self._onset: float | None = None
        self._stop: float | None = None

    def on_event(self, event: Event) -> None:
        t = event.turn_id
        self.updates += 1
        if isinstance(event, UserStartedSpeaking):
            self._onset, self._stop = event.onset or event.ts, None
        elif isinstance(event, UserStoppedSpeaking):
            self._stop = event.ts
        elif isinstance(event, UserTextReceived):
            if event.source == "voice" and self._onset is not None:
                self.trainee[t] = [self._onset, self._stop or event.ts]
                self._onset = self._stop = None
            else:
                self.trainee[t] = [event.ts, event.ts]
        elif isinstance(event, AvatarStartedSpeaking):
            self.voiced.add(t)
            self.avatar[t] = [event.ts, event.ts]
        elif isinstance(event, AvatarStoppedSpeaking):
            if t in self.avatar:
                self.avatar[t][1] = event.ts
        elif t not in self.voiced:  # text: from the first words written to the answer's end
            if isinstance(event, AgentTextDelta):
                self.avatar.setdefault(t, [event.ts, event.ts])
            elif isinstance(event, AgentTurnFinished) and t in self.avatar:
                self.avatar[t][1] = event.ts


def build_transcript(persona: Persona, history: History, times: TurnTimes, t0: float) -> Transcript:
    """A session's turns (the persona's greeting first) with their times in seconds from ``t0``."""
    def rel(value: float | None) -> float | None:
        return None if value is None else round(max(value - t0, 0.0), 3)

    turns = []
    greeting = persona.greeting.strip()
    if greeting:
        turns.append(TranscriptTurn("avatar", greeting, None, None))
    for m in history.messages:
        if not m.content.strip() or m.role not in ("user", "assistant"):
            continue
        side = times.trainee if m.role == "user" else times.avatar
        start, end = side.get(m.turn_id or 0, (None, None))
        turns.append(TranscriptTurn("trainee" if m.role == "user" else "avatar", m.content, rel(start), rel(end)))
    return Transcript(turns)


class ReportWriter:
    """Writes a scenario session's report when the scenario ends and again on close if more was said.

    It gets what it reads: the session's bus, persona and history, its tenant (read when a report is written: a
    session's tenant may be set after it was built), the runner, the store and the embedder (made on first use).
    """

    def __init__(self, bus: Bus, persona: Persona, history: History, tenant: Callable[[], str],
                 runner: ScenarioRunner, store: ReportStore, embedder: Callable[[], Any]) -> None:
        self.bus = bus
        self.persona = persona
        self.history = history
        self.tenant = tenant
        self.runner = runner
        self.store = store
        self.embedder = embedder
        self.times = TurnTimes()
        self.t0 = time.monotonic()
        self.started = time.time()
        self.written_at: tuple[int, int] | None = None  # (history length, timings seen) when last written
        self._ending_turn: int | None = None
        self._lock = asyncio.Lock()

    def attach(self) -> None:
        bus = self.bus
        bus.subscribe(self.times.on_event, *TurnTimes.EVENTS, name="report.times", drop_stale=False)
        bus.subscribe(self._on_event, ScenarioEnded, AgentTurnFinished, AvatarStoppedSpeaking, name="report.end",
                      drop_stale=False)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, ScenarioEnded):
            if event.turn_id == 0:  # the time limit passed between turns: nothing more is coming for now
                self.bus.spawn(self.write(event.reason), name="report.write")
            else:
                self._ending_turn = event.turn_id
        elif event.turn_id == self._ending_turn and event.turn_id:
            # the closing line is written (then, with a voice, said: its times complete the report)
            if isinstance(event, AvatarStoppedSpeaking):
                self._ending_turn = None
            reason = self.runner.ended.reason if self.runner.ended is not None else "completed"
            self.bus.spawn(self.write(reason, again=False), name="report.write")

    async def close(self) -> None:
        """On session close: write (again) if the scenario started and something was said since."""
        ended = self.runner.ended
        await self.write(ended.reason if ended is not None else "session closed", again=False)

    async def write(self, reason: str, *, again: bool = True) -> Path | None:
        """Score the transcript and store the report (unless ``again`` is false and nothing was said since the last
        write, or the scenario never started); never raises (a scoring failure is stored as ``error``)."""
        async with self._lock:  # a write in progress finishes first
            if self.runner.started_at is None or (not again and self.written_at == self._state()):
                return None
            try:
                return await self._write(reason)
            except Exception:
                log.exception("session %s: the role-play report could not be written", self.bus.session_id)
                return None

    def _state(self) -> tuple[int, int]:
        return len(self.history.messages), self.times.updates

    async def settled(self) -> None:
        """Wait for a write in progress (a report asked for while its session closes is read after it)."""
        async with self._lock:
            pass

    async def _write(self, reason: str) -> Path:
        from .scoring import score_transcript

        persona, sid = self.persona, self.bus.session_id
        self.written_at = self._state()
        transcript = build_transcript(persona, self.history, self.times, self.t0)
        sc = persona.scenario
        report: dict[str, Any] = {
            "version": VERSION, "session_id": sid, "tenant": self.tenant(), "persona": persona.id,
            "persona_name": persona.name, "persona_version": persona.version, "language": persona.language,
            "trainee": self.runner.trainee,
            "scenario": {"kind": sc.kind, "role": sc.avatar_role, "difficulty": sc.difficulty, "goal": sc.goal,
                         "time_limit_s": sc.time_limit_s, "steps": [{"id": s.id, "aim": s.aim} for s in sc.steps]},
            "started": self.started, "ended": time.time(), "ended_reason": reason,
            "steps_visited": list(self.runner.visited), "transcript": transcript.to_dict(),
            "scorecard": None, "error": None, "overrides": {},
        }
        try:
            card = await score_transcript(persona, transcript, embedder=self.embedder())
            report["scorecard"] = card.to_dict()
        except Exception as exc:  # keep the transcript: it can be scored again with `fay roleplay score`
            log.warning("session %s: scoring the role-play failed: %s", sid, exc)
            report["error"] = f"scoring failed: {type(exc).__name__}: {exc}"
        path = await asyncio.to_thread(self.store.save, report)
        log.info("session %s: role-play report written (%s)", sid, reason)
        return path


def render_report(report: dict[str, Any]) -> str:
    """A report for people (``fay roleplay report``): the scores (a trainer's beside the AI's), then the transcript."""
    final = report.get("final") or final_scores(report)
    total = final.get("total")
    lines = [f"{report.get('persona_name') or report.get('persona')} · session {report.get('session_id')} · "
             f"trainee {report.get('trainee') or '-'} · {report.get('ended_reason')}",
             f"total {'-' if total is None else f'{total:g}'} / 100"]
    if report.get("error"):
        lines.append(f"error: {report['error']}")
    overrides = report.get("overrides") or {}
    for c in (report.get("scorecard") or {}).get("criteria", []):
        ai = "-" if c.get("score") is None else f"{c['score']:g}"
        ov = overrides.get(c["criterion"])
        shown = f"{ov['score']:g} (trainer; AI {ai}: {ov['comment']})" if ov else f"{ai} (AI)"
        lines.append(f"  {c['criterion']}: {shown} / {c.get('max_score', 10):g}")
        for k in c.get("checks", []):
            lines.append(f"    {'+' if k.get('found') else '-'} {k['check']}"
                         + (f"  \"{k['quote']}\" (turn {k['turn']})" if k.get("found") else "  (missing)"))
        for v in c.get("violations", []):
            lines.append(f"    ! {v['avoid']}  \"{v['quote']}\" (turn {v['turn']})")
    lines.append("transcript:")
    for i, t in enumerate(report.get("transcript", {}).get("turns", [])):
        when = "" if t.get("start_s") is None else f"{t['start_s']:7.1f}s "
        lines.append(f"  [{i}] {when}{t['speaker']}: {t['text']}")
    return "\n".join(lines)
