"""The event bus: in-process asyncio pub/sub, one per session.

- ``publish()`` is synchronous and never blocks: it appends the event to each matching subscriber's queue.
- Each subscriber has its own task and two bounded queues; urgent events (``Event.URGENT``) are delivered
  before any queued ordered event. A plain-function (sync) subscriber that is idle, with nothing queued, gets the
  event at once inside ``publish()`` (one function call instead of a task wake-up: the hot path for audio frames);
  a busy one gets it queued, so order is kept either way. Sync handlers must therefore be quick; put slow work in
  an ``async`` handler. A full queue drops its oldest event and counts it (``Subscription.dropped``, and the
  bus's ``on_drop`` callback with the subscriber's name, e.g. :meth:`fay_core.metrics.Metrics.on_drop`);
  the first drop is reported as an :class:`~fay_core.events.ErrorRaised`.
- ``new_turn()`` starts a turn; events of an older turn are stale and dropped before delivery to subscribers
  made with ``drop_stale=True`` (the default). Events with ``turn_id == 0`` are never stale.
- A handler that raises does not stop its subscriber or the bus: the exception is published as
  ``ErrorRaised(source=<subscriber name>)``.
- ``spawn()`` runs a task owned by the bus; ``close()`` cancels and awaits every subscriber and owned task.

The interface (``publish``, ``subscribe``, ``close``) is what a cross-process backend (Redis Streams, NATS)
would implement for remote observers; this in-process one is what sessions use.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from .events import ErrorRaised, Event

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)
Handler = Callable[[Any], Awaitable[None] | None]


class Subscription:
    """One subscriber: its handler, the event types it takes, its queues and counters."""

    __slots__ = (
        "_ordered",
        "_running",
        "_task",
        "_urgent",
        "_waiter",
        "delivered",
        "drop_stale",
        "dropped",
        "handler",
        "inline",
        "is_async",
        "maxsize",
        "name",
        "stale",
        "types",
    )

    def __init__(self, handler: Handler, types: tuple[type[Event], ...], name: str, maxsize: int, drop_stale: bool):
        self.handler = handler
        self.types = types
        self.name = name
        self.maxsize = maxsize
        self.drop_stale = drop_stale
        self.is_async = inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
            getattr(handler, "__call__", None)  # noqa: B004 - an object whose __call__ is async
        )
        self._ordered: deque[Event] = deque()
        self._urgent: deque[Event] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._running = False
        self.inline = not self.is_async
        self.delivered = 0
        self.dropped = 0
        self.stale = 0

    def __repr__(self) -> str:
        return f"<Subscription {self.name} queued={len(self._ordered) + len(self._urgent)} dropped={self.dropped}>"


class Bus:
    """A session's event bus. See the module docstring for its guarantees."""

    def __init__(self, session_id: str = "", *, maxsize: int = 1024,
                 on_drop: Callable[[str], None] | None = None) -> None:
        self.session_id = session_id
        self.maxsize = maxsize
        self.on_drop = on_drop  #: called with the subscriber's name for every event a full queue drops
        self._turn_id = 0
        self._subs: list[Subscription] = []
        self._routes: dict[type[Event], tuple[Subscription, ...]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    # --- turns ------------------------------------------------------------------------------------------

    @property
    def turn_id(self) -> int:
        """The current turn; events of older turns are stale."""
        return self._turn_id

    def new_turn(self) -> int:
        """Start a new turn and return its id; queued events of older turns become stale."""
        self._turn_id += 1
        return self._turn_id

    @property
    def closed(self) -> bool:
        return self._closed

    # --- subscribing ------------------------------------------------------------------------------------

    def subscribe(
        self,
        handler: Handler,
        *types: type[Event],
        name: str | None = None,
        maxsize: int | None = None,
        drop_stale: bool = True,
    ) -> Subscription:
        """Deliver events of ``types`` (and their subclasses; all events if none) to ``handler``.

        ``handler`` may be a plain function or a coroutine function; it runs in the subscriber's own task, one
        event at a time, in order (urgent events first).
        """
        if self._closed:
            raise RuntimeError(f"bus of session {self.session_id!r} is closed")
        sub = Subscription(
            handler,
            types or (Event,),
            name or str(getattr(handler, "__qualname__", repr(handler))),
            maxsize or self.maxsize,
            drop_stale,
        )
        sub._task = asyncio.get_running_loop().create_task(self._run(sub), name=f"bus:{sub.name}")
        self._subs.append(sub)
        self._routes.clear()
        return sub

    async def unsubscribe(self, sub: Subscription) -> None:
        """Stop delivering to ``sub`` and wait for its task to end."""
        if sub in self._subs:
            self._subs.remove(sub)
            self._routes.clear()
        if sub._task is not None:
            sub._task.cancel()
            await asyncio.gather(sub._task, return_exceptions=True)

    def _route(self, etype: type[Event]) -> tuple[Subscription, ...]:
        subs = tuple(s for s in self._subs if issubclass(etype, s.types))
        self._routes[etype] = subs
        return subs

    # --- publishing -------------------------------------------------------------------------------------

    def publish(self, event: Event) -> None:
        """Queue ``event`` for every matching subscriber. Never blocks; a no-op once the bus is closed."""
        if self._closed:
            return
        subs = self._routes.get(type(event))
        if subs is None:
            subs = self._route(type(event))
        urgent = event.URGENT
        for sub in subs:
            w = sub._waiter
            if sub.inline and w is not None and not w.done() and not sub._running:
                self._deliver_now(sub, event)
                continue
            q = sub._urgent if urgent else sub._ordered
            if len(q) >= sub.maxsize:
                q.popleft()
                sub.dropped += 1
                if self.on_drop is not None:
                    self.on_drop(sub.name)
                if sub.dropped == 1 and not isinstance(event, ErrorRaised):
                    self._overflow(sub)
            q.append(event)
            if w is not None and not w.done():
                w.set_result(None)

    def _deliver_now(self, sub: Subscription, event: Event) -> None:
        """Run an idle sync subscriber's handler inside ``publish()`` (it is parked with nothing queued)."""
        if sub.drop_stale and event.turn_id and event.turn_id < self._turn_id:
            sub.stale += 1
            return
        sub._running = True  # a publish from inside the handler to this subscriber is queued, not nested
        try:
            sub.handler(event)
            sub.delivered += 1
        except Exception as exc:
            self._report(sub, event, exc)
        finally:
            sub._running = False

    def emit(self, etype: type[E], /, **fields: Any) -> E:
        """Build an event of ``etype`` stamped with this bus's session (and current turn unless given), publish it."""
        fields.setdefault("session_id", self.session_id)
        fields.setdefault("turn_id", self._turn_id)
        event = etype(**fields)
        self.publish(event)
        return event

    def _overflow(self, sub: Subscription) -> None:
        msg = f"subscriber {sub.name!r} is falling behind: its queue of {sub.maxsize} is full, oldest events dropped"
        log.warning("session %s: %s", self.session_id, msg)
        self.publish(ErrorRaised(session_id=self.session_id, source=sub.name, message=msg, error_type="BusOverflow"))

    # --- delivering -------------------------------------------------------------------------------------

    async def _run(self, sub: Subscription) -> None:
        loop = asyncio.get_running_loop()
        ordered, urgent, handler, is_async = sub._ordered, sub._urgent, sub.handler, sub.is_async
        drop_stale = sub.drop_stale
        while True:
            while urgent or ordered:
                event = urgent.popleft() if urgent else ordered.popleft()
                if drop_stale and event.turn_id and event.turn_id < self._turn_id:
                    sub.stale += 1
                    continue
                try:
                    if is_async:
                        await handler(event)  # type: ignore[misc]
                    else:
                        handler(event)
                    sub.delivered += 1
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._report(sub, event, exc)
            # parked: idle() knows a subscriber is done when its queues are empty and it waits here
            sub._waiter = loop.create_future()
            try:
                await sub._waiter
            finally:
                sub._waiter = None

    def _report(self, sub: Subscription, event: Event, exc: Exception) -> None:
        log.error(
            "session %s: subscriber %r failed on %s: %s",
            self.session_id,
            sub.name,
            type(event).__name__,
            exc,
            exc_info=exc,
        )
        if isinstance(event, ErrorRaised):
            return  # an error handler that fails must not start an error storm
        self.publish(ErrorRaised.of(exc, session_id=self.session_id, turn_id=event.turn_id, source=sub.name))

    # --- tasks and shutdown -----------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str | None = None) -> asyncio.Task[Any]:
        """Run ``coro`` as a task owned by this bus: cancelled and awaited by ``close()``.

        An exception that escapes it is published as ``ErrorRaised``.
        """
        if self._closed:
            coro.close()
            raise RuntimeError(f"bus of session {self.session_id!r} is closed")
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("session %s: task %s failed: %s", self.session_id, task.get_name(), exc, exc_info=exc)
            self.publish(ErrorRaised.of(exc, session_id=self.session_id, source=task.get_name()))

    @property
    def tasks(self) -> int:
        """How many tasks the bus owns now (subscribers and spawned)."""
        return sum(1 for s in self._subs if s._task and not s._task.done()) + len(self._tasks)

    def subscriptions(self) -> list[Subscription]:
        return list(self._subs)

    async def idle(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until every subscriber's queues are empty and no handler is running (for tests and shutdown)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while any(s._ordered or s._urgent or s._waiter is None for s in self._subs if not s._task.done()):  # type: ignore[union-attr]
            if loop.time() > deadline:
                raise TimeoutError(f"bus of session {self.session_id!r} did not go idle in {timeout}s")
            await asyncio.sleep(0.001)

    async def close(self) -> None:
        """Cancel and await every subscriber task and every task spawned on this bus. Idempotent."""
        if self._closed:
            return
        self._closed = True
        tasks = [s._task for s in self._subs if s._task is not None] + list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._subs.clear()
        self._routes.clear()
        self._tasks.clear()
