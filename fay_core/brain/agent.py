"""The agent: turns user messages into answers on the session's bus.

A turn starts with :meth:`Agent.start_turn` (typed text, or a final transcript). Starting a new turn, or an
:class:`~fay_core.events.Interrupted` event, cancels the turn in progress. What the user said is recorded before
any answerer runs, so a dead LLM endpoint loses nothing; when the LLM fails the offline answerer stands in.
If that record cannot be written (:class:`~fay_core.errors.AuditUnavailable`), the turn is not started at all.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from ..bus import Bus
from ..errors import AuditUnavailable
from ..events import AgentThinking, AgentTurnFinished, ErrorRaised, Interrupted, TranscriptFinal, UserTextReceived
from .offline import OfflineAnswerer
from .rag import Retriever
from .turn import Turn

log = logging.getLogger(__name__)


class Answerer(Protocol):
    """Writes the answer of a turn: ``turn.say()`` text, append ``turn.citations``, set ``turn.answered_by``."""

    name: str

    async def answer(self, turn: Turn) -> None: ...


class Recorder(Protocol):
    """Where the agent writes each turn (:class:`fay_core.record.SessionRecord`)."""

    def user(self, turn: Turn) -> None: ...

    def answer(self, turn: Turn, finished: AgentTurnFinished) -> None: ...

    def interrupted(self, turn: Turn) -> None: ...


class Agent:
    """Runs one turn at a time on a session's bus; ``answerer`` writes the answers, ``offline`` stands in."""

    def __init__(
        self, bus: Bus, record: Recorder, answerer: Answerer, offline: OfflineAnswerer, retriever: Retriever
    ) -> None:
        self.bus = bus
        self.record = record
        self.answerer = answerer
        self.offline = offline
        self.retriever = retriever
        self._task: asyncio.Task[None] | None = None
        self._turn: Turn | None = None

    def attach(self) -> None:
        bus = self.bus
        bus.subscribe(self._on_transcript, TranscriptFinal, name="agent.transcript")
        bus.subscribe(self._on_interrupted, Interrupted, name="agent.interrupt", drop_stale=False)
        if self.retriever.enabled:
            bus.spawn(self.retriever.prepare(), name="agent.knowledge")  # ingest/open the knowledge base early

    @property
    def current(self) -> Turn | None:
        """The turn being answered, if any."""
        return self._turn if self._task and not self._task.done() else None

    def start_turn(self, text: str, source: str = "text") -> Turn:
        """Start answering ``text``; a turn already running is cancelled (its partial answer is kept as interrupted)."""
        bus = self.bus
        self.cancel("superseded")
        turn = Turn(bus, bus.new_turn(), text, source)
        self._turn = turn
        self.record.user(turn)
        bus.publish(UserTextReceived(session_id=bus.session_id, turn_id=turn.id, text=text, source=source))
        self._task = bus.spawn(self._run(turn), name=f"agent.turn{turn.id}")
        return turn

    def greet(self, text: str, source: str = "arrival") -> Turn | None:
        """Say ``text`` unprompted (the greeting when a visitor arrives) as a turn of its own, spoken like any
        answer; ``None`` (nothing said) while a turn is being answered. The audit log gets the answer only."""
        text = text.strip()
        if not text or self.current is not None:
            return None
        bus = self.bus
        turn = Turn(bus, bus.new_turn(), "", source)
        self._turn = turn
        bus.publish(UserTextReceived(session_id=bus.session_id, turn_id=turn.id, text="", source=source))
        self._task = bus.spawn(self._run(turn, _Scripted(text)), name=f"agent.turn{turn.id}")
        return turn

    def cancel(self, reason: str = "interrupted") -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel(reason)

    async def wait(self) -> None:
        """Wait for the current turn to finish (or be cancelled)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    def _on_transcript(self, event: TranscriptFinal) -> None:
        if event.text.strip():
            self.start_turn(event.text.strip(), source="voice")

    def _on_interrupted(self, event: Interrupted) -> None:
        turn = self._turn
        if turn is not None and event.turn_id == turn.id:
            turn.heard = event.played_text
            self.cancel("interrupted")
            self.record.interrupted(turn)

    async def _run(self, turn: Turn, answerer: Answerer | None = None) -> None:
        bus = self.bus
        answerer = answerer or self.answerer
        bus.publish(AgentThinking(session_id=bus.session_id, turn_id=turn.id, question=turn.question))
        error = ""
        interrupted = False
        try:
            try:
                await answerer.answer(turn)
            except Exception as exc:  # a failing answerer must not take the session down
                report = ErrorRaised.of(exc, session_id=bus.session_id, turn_id=turn.id, source=answerer.name)
                error = report.message
                log.warning("session %s turn %d: %s", bus.session_id, turn.id, exc)
                bus.publish(report)
                if answerer is self.answerer and answerer is not self.offline and not turn.text:
                    await self.offline.answer(turn)
                    turn.answered_by = "fallback"
        except asyncio.CancelledError:
            interrupted = True
            raise
        finally:
            turn.mark("turn_finished")
            finished = AgentTurnFinished(
                session_id=bus.session_id,
                turn_id=turn.id,
                text=turn.text,
                citations=tuple(turn.citations),
                answered_by=turn.answered_by,
                interrupted=interrupted,
                error=error,
                declined=turn.declined,
            )
            try:
                self.record.answer(turn, finished)
            except AuditUnavailable as exc:  # logged by the audit log; the client still gets the turn's end
                bus.publish(ErrorRaised.of(exc, session_id=bus.session_id, turn_id=turn.id, source="audit"))
            bus.publish(finished)


class _Scripted:
    """An answerer that says a fixed text (:meth:`Agent.greet`)."""

    name = "scripted"

    def __init__(self, text: str) -> None:
        self.text = text

    async def answer(self, turn: Turn) -> None:
        turn.answered_by = "greeting"
        turn.say(self.text)
