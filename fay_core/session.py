"""A session: one connected user, with its own bus, persona, record and parts.

Sessions share only read-only things (engines, the knowledge store, plugins). A fault inside a session is
reported on its bus as :class:`~fay_core.events.ErrorRaised` and never reaches another session. Sessions are
built by :class:`fay_core.assembly.Assembly` (through :meth:`fay_core.app.Fay.create_session`), which also tears
them down: :meth:`Session.close` runs the parts' cleanups in the reverse order of their building.

Closing a session ends every :meth:`Session.ask` in progress: the turn being answered is cancelled, its
``AgentTurnFinished`` (interrupted) is delivered, and then the stream ends, whatever the persona's parts are.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .brain.agent import Agent
from .brain.tools import ToolContext
from .brain.turn import Turn
from .bus import Bus
from .disclosure import Disclosure
from .errors import ClosedSession, InvalidMessage, MessageTooLong, SessionError
from .events import (
    AgentTextDelta,
    AgentToolCalled,
    AgentToolReturned,
    AgentTurnFinished,
    ErrorRaised,
    Event,
    ScenarioEnded,
    ScenarioStepChanged,
    SessionClosed,
)
from .persona import Persona
from .plugins import await_me_maybe
from .record import SessionRecord

if TYPE_CHECKING:
    from .avatar.timeline import AnimationTimeline
    from .engines import AvatarStream
    from .recording import SessionRecorder
    from .roleplay.reports import ReportWriter
    from .roleplay.runner import ScenarioRunner
    from .vision import LatestFrame, VisionWatcher
    from .voice.pipeline import VoicePipeline

log = logging.getLogger(__name__)

#: the events :meth:`Session.ask` yields for a turn
ANSWER_EVENTS = (AgentTextDelta, AgentToolCalled, AgentToolReturned, AgentTurnFinished, ErrorRaised,
                 ScenarioStepChanged, ScenarioEnded)


class Session:
    """One conversation. Build with :meth:`fay_core.app.Fay.create_session`."""

    def __init__(
        self,
        persona: Persona,
        bus: Bus,
        record: SessionRecord,
        agent: Agent,
        tools: ToolContext,
        *,
        max_message_chars: int = 4000,
    ) -> None:
        self.id = bus.session_id
        self.persona = persona
        #: the tenant the session belongs to (its persona's; set by whoever creates it, see :mod:`fay_core.tenancy`)
        self.tenant: str = "default"
        self.bus = bus
        self.record = record
        self.history = record.history
        self.agent = agent
        self.tools = tools
        self.max_message_chars = max_message_chars
        #: that an AI serves the customer: shown and said first (see :mod:`fay_core.disclosure`)
        self.disclosure = Disclosure(bus, persona, record)
        #: the consent-gated recording, for personas that record (``recording.enabled``)
        self.recorder: SessionRecorder | None = None
        self.created = time.time()
        self.last_active = time.monotonic()
        self.closed = False
        #: the role-play scenario being played, for personas whose scenario has steps (:mod:`fay_core.roleplay`)
        self.scenario: ScenarioRunner | None = None
        #: the role-play's report writer (:mod:`fay_core.roleplay.reports`)
        self.report: ReportWriter | None = None
        #: the voice pipeline, once the assembly gave the session one (audio arrived, or it was asked for)
        self.voice: VoicePipeline | None = None
        #: the lip-sync/animation timeline, for personas with an avatar renderer
        self.timeline: AnimationTimeline | None = None
        #: the persona's avatar renderer running for this session
        self.avatar: AvatarStream | None = None
        #: the camera watcher, once a visitor's camera track arrived for a persona with ``vision.enabled``
        self.vision: VisionWatcher | None = None
        #: the camera's latest frame (only that one), for a look on request; personas with ``vision.enabled``
        self.frames: LatestFrame | None = None
        self._cleanups: list[Callable[[], Awaitable[Any] | Any]] = []
        #: the queues of the :meth:`ask` calls in progress; :meth:`close` ends each with ``None``
        self._asks: set[asyncio.Queue[Event | None]] = set()

    @property
    def customer_id(self) -> str | None:
        """The authenticated customer (``authenticate_customer``); tools read their data only."""
        return self.tools.customer_id

    @customer_id.setter
    def customer_id(self, value: str | None) -> None:
        self.tools.customer_id = value

    # --- talking ----------------------------------------------------------------------------------------

    def submit(self, text: str, source: str = "text") -> Turn:
        """Start answering ``text``. Raises :class:`SessionError` if the session is closed or the text is bad."""
        if self.closed:
            raise ClosedSession(f"session {self.id} is closed: start a new one")
        text = text.strip()
        if not text:
            raise InvalidMessage("empty message: send some text")
        limit = self.max_message_chars
        if len(text) > limit:
            raise MessageTooLong(f"message of {len(text)} characters is over the limit of {limit}")
        self.last_active = time.monotonic()
        return self.agent.start_turn(text, source)

    async def ask(self, text: str, source: str = "text") -> AsyncIterator[Event]:
        """Submit ``text`` and yield this turn's answer events, ending with its ``AgentTurnFinished``.

        The session's first stream starts with :class:`~fay_core.events.AgentDisclosed` unless the client was
        shown the disclosure already (see :mod:`fay_core.disclosure`).
        """
        if self.closed:
            raise ClosedSession(f"session {self.id} is closed: start a new one")
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        sub = self.bus.subscribe(queue.put_nowait, *ANSWER_EVENTS, name="session.ask", drop_stale=False)
        self._asks.add(queue)
        try:
            turn = self.submit(text, source)
            disclosed = self.disclosure.for_stream()
            if disclosed is not None:
                yield disclosed
            while True:
                event = await queue.get()
                if event is None:  # closed before the turn's end reached us: end the stream all the same
                    yield AgentTurnFinished(session_id=self.id, turn_id=turn.id, text=turn.text,
                                            answered_by=turn.answered_by, interrupted=True, error="session closed")
                    return
                if event.turn_id != turn.id:
                    continue
                yield event
                if isinstance(event, AgentTurnFinished):
                    return
        finally:
            self._asks.discard(queue)
            await self.bus.unsubscribe(sub)

    async def answer(self, text: str) -> AgentTurnFinished:
        """Submit ``text`` and return the finished turn."""
        async for event in self.ask(text):
            if isinstance(event, AgentTurnFinished):
                return event
        raise SessionError("turn ended without an answer")  # pragma: no cover - ask() always ends on one

    # --- lifecycle --------------------------------------------------------------------------------------

    def on_close(self, callback: Callable[[], Awaitable[Any] | Any]) -> None:
        """Run ``callback`` when the session closes (in reverse order of registration)."""
        self._cleanups.append(callback)

    async def close(self, reason: str = "", *, turn_timeout_s: float = 5.0) -> None:
        """Stop every task of this session and free what it holds. Idempotent; never raises.

        The turn in progress is cancelled and given ``turn_timeout_s`` to record and publish its (interrupted)
        end before the parts are torn down; every :meth:`ask` still waiting is then ended.
        """
        if self.closed:
            return
        self.closed = True
        self.bus.publish(SessionClosed(session_id=self.id, reason=reason))
        self.agent.cancel("session closed")
        try:
            await asyncio.wait_for(self.agent.wait(), turn_timeout_s)
        except TimeoutError:
            log.error("session %s: the turn in progress did not end %.1f s after it was cancelled", self.id,
                      turn_timeout_s)
        for callback in reversed(self._cleanups):
            try:
                await await_me_maybe(callback())
            except Exception:
                log.exception("session %s: cleanup %r failed", self.id, callback)
        self._cleanups.clear()
        await self.bus.close()
        for queue in self._asks:
            queue.put_nowait(None)
