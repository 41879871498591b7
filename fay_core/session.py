"""A session: one connected user, with its own bus, persona, history and tasks.

Sessions share only read-only things (engines, the knowledge store, plugins). A fault inside a session is
reported on its bus as :class:`~fay_core.events.ErrorRaised` and never reaches another session.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .brain.agent import Agent
from .brain.history import History
from .brain.turn import Turn
from .bus import Bus
from .errors import ClosedSession, InvalidMessage, MessageTooLong, SessionError
from .events import (
    AgentTextDelta,
    AgentToolCalled,
    AgentToolReturned,
    AgentTurnFinished,
    ErrorRaised,
    Event,
    SessionClosed,
)
from .persona import Persona
from .plugins import await_me_maybe

if TYPE_CHECKING:
    from .app import Fay

log = logging.getLogger(__name__)

#: the events :meth:`Session.ask` yields for a turn
ANSWER_EVENTS = (AgentTextDelta, AgentToolCalled, AgentToolReturned, AgentTurnFinished, ErrorRaised)


class Session:
    """One conversation. Create through :meth:`fay_core.app.Fay.create_session`."""

    def __init__(self, app: Fay, persona: Persona, session_id: str | None = None) -> None:
        self.app = app
        self.persona = persona
        self.id = session_id or uuid.uuid4().hex
        self.bus = Bus(self.id)
        self.history = History()
        self.created = time.time()
        self.last_active = time.monotonic()
        self.closed = False
        self.agent: Agent | None = None
        self.customer_id: str | None = None  # the authenticated customer; tools read their data only
        self.voice: Any = None  # the voice pipeline, once fay_core.voice.attach_voice() gave it one
        self.avatar: Any = None  # the persona's avatar stream (fay_core.avatar.attach_avatar), if it has a renderer
        self._cleanups: list[Callable[[], Awaitable[Any] | Any]] = []

    async def start(self) -> None:
        """Wire the agent, observers and the persona's avatar renderer, then call the ``session_started`` hooks."""
        self.agent = Agent(self)
        self.agent.attach()
        self.bus.subscribe(self._log_error, ErrorRaised, name="session.errors", drop_stale=False)
        if self.app.plugins.hook_has_impls("event_observed"):
            self.bus.subscribe(self._observe, name="plugins.event_observed", drop_stale=False)
        if self.persona.avatar.renderer not in ("", "none"):
            from .avatar import attach_avatar

            await attach_avatar(self)
        for result in self.app.plugins.pm.hook.session_started(session=self):
            await await_me_maybe(result)

    # --- talking ----------------------------------------------------------------------------------------

    def submit(self, text: str, source: str = "text") -> Turn:
        """Start answering ``text``. Raises :class:`SessionError` if the session is closed or the text is bad."""
        if self.closed or self.agent is None:
            raise ClosedSession(f"session {self.id} is closed: start a new one")
        text = text.strip()
        if not text:
            raise InvalidMessage("empty message: send some text")
        limit = self.app.settings.server.max_message_chars
        if len(text) > limit:
            raise MessageTooLong(f"message of {len(text)} characters is over the limit of {limit}")
        self.last_active = time.monotonic()
        return self.agent.start_turn(text, source)

    async def ask(self, text: str, source: str = "text") -> AsyncIterator[Event]:
        """Submit ``text`` and yield this turn's answer events, ending with its ``AgentTurnFinished``."""
        queue: asyncio.Queue[Event] = asyncio.Queue()
        sub = self.bus.subscribe(queue.put_nowait, *ANSWER_EVENTS, name="session.ask", drop_stale=False)
        try:
            turn = self.submit(text, source)
            while True:
                event = await queue.get()
                if event.turn_id != turn.id:
                    continue
                yield event
                if isinstance(event, AgentTurnFinished):
                    return
        finally:
            await self.bus.unsubscribe(sub)

    async def answer(self, text: str) -> AgentTurnFinished:
        """Submit ``text`` and return the finished turn."""
        async for event in self.ask(text):
            if isinstance(event, AgentTurnFinished):
                return event
        raise SessionError("turn ended without an answer")  # pragma: no cover - ask() always ends on one

    # --- the record -------------------------------------------------------------------------------------

    def _base_record(self, turn: Turn) -> dict[str, Any]:
        return {
            "session": self.id,
            "persona": self.persona.id,
            "persona_version": self.persona.version,
            "turn": turn.id,
        }

    def record_user(self, turn: Turn) -> None:
        """Put what the user said into history and the audit log (before anything can fail)."""
        self.history.add("user", turn.question, turn_id=turn.id)
        self.app.audit.write({**self._base_record(turn), "kind": "user", "source": turn.source, "text": turn.question})

    def record_answer(self, turn: Turn, finished: AgentTurnFinished) -> None:
        """Put the answer into history (only the words heard, if interrupted) and the audit log."""
        heard = turn.heard if turn.heard is not None else finished.text
        if heard or finished.interrupted:
            self.history.add("assistant", heard, interrupted=finished.interrupted, turn_id=turn.id)
        self.app.audit.write(
            {
                **self._base_record(turn),
                "kind": "answer",
                "text": finished.text,
                "heard": heard,
                "answered_by": finished.answered_by,
                "interrupted": finished.interrupted,
                "error": finished.error,
                "citations": [c.to_json() for c in finished.citations],
                "tools": turn.tools,
                "latency_ms": {k: round(v, 1) for k, v in turn.marks.items()},
            }
        )

    def history_interrupted(self, turn: Turn) -> None:
        """After barge-in: keep in history only the words the user heard, marked as interrupted."""
        msg = self.history.find("assistant", turn.id)
        if msg is not None and turn.heard is not None:
            msg.content = turn.heard
            msg.interrupted = True
            self.app.audit.write({**self._base_record(turn), "kind": "interrupted", "heard": turn.heard})

    # --- lifecycle --------------------------------------------------------------------------------------

    def on_close(self, callback: Callable[[], Awaitable[Any] | Any]) -> None:
        """Run ``callback`` when the session closes (in reverse order of registration)."""
        self._cleanups.append(callback)

    async def close(self, reason: str = "") -> None:
        """Stop every task of this session and free what it holds. Idempotent; never raises."""
        if self.closed:
            return
        self.closed = True
        self.bus.publish(SessionClosed(session_id=self.id, reason=reason))
        if self.agent is not None:
            self.agent.cancel("session closed")
        for callback in reversed(self._cleanups):
            try:
                await await_me_maybe(callback())
            except Exception:
                log.exception("session %s: cleanup %r failed", self.id, callback)
        self._cleanups.clear()
        await self.bus.close()
        for result in self.app.plugins.pm.hook.session_ended(session=self):
            try:
                await await_me_maybe(result)
            except Exception:
                log.exception("session %s: session_ended hook failed", self.id)

    def _log_error(self, event: ErrorRaised) -> None:
        self.app.audit.write(
            {"session": self.id, "persona": self.persona.id, "turn": event.turn_id, "kind": "error",
             "source": event.source, "message": event.message}
        )

    async def _observe(self, event: Event) -> None:
        for result in self.app.plugins.pm.hook.event_observed(session=self, event=event):
            await await_me_maybe(result)
