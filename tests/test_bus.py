"""The event bus: ordering, urgency, bounded queues, stale turns, error isolation, shutdown."""

from __future__ import annotations

import asyncio

import pytest

from fay_core.bus import Bus
from fay_core.events import AgentTextDelta, ErrorRaised, Event, Interrupted, UserTextReceived


async def test_delivers_in_order_to_matching_subscribers() -> None:
    bus = Bus("s1")
    got: list[str] = []
    everything: list[type] = []
    bus.subscribe(lambda e: got.append(e.text), AgentTextDelta)
    bus.subscribe(lambda e: everything.append(type(e)))
    for word in ["a", "b", "c"]:
        bus.emit(AgentTextDelta, text=word)
    bus.emit(UserTextReceived, text="hi")
    await bus.idle()
    assert got == ["a", "b", "c"]
    assert everything == [AgentTextDelta] * 3 + [UserTextReceived]
    await bus.close()


async def test_async_handlers_run_one_event_at_a_time() -> None:
    bus = Bus()
    running = 0
    peak = 0

    async def slow(event: Event) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001)
        running -= 1

    sub = bus.subscribe(slow, AgentTextDelta)
    for i in range(5):
        bus.emit(AgentTextDelta, text=str(i))
    await bus.idle()
    assert peak == 1 and sub.delivered == 5
    await bus.close()


async def test_urgent_events_overtake_queued_ordered_events() -> None:
    bus = Bus()
    got: list[str] = []
    bus.subscribe(lambda e: got.append(type(e).__name__))
    # all published before the subscriber task gets to run
    for i in range(3):
        bus.emit(AgentTextDelta, text=str(i))
    bus.emit(Interrupted, reason="barge-in")
    await bus.idle()
    assert got == ["Interrupted", "AgentTextDelta", "AgentTextDelta", "AgentTextDelta"]
    await bus.close()


async def test_full_queue_drops_oldest_and_reports_it() -> None:
    bus = Bus(maxsize=4)
    got: list[str] = []
    errors: list[ErrorRaised] = []
    sub = bus.subscribe(lambda e: got.append(e.text), AgentTextDelta, name="slowpoke")
    bus.subscribe(errors.append, ErrorRaised)
    for i in range(10):
        bus.emit(AgentTextDelta, text=str(i))
    await bus.idle()
    assert got == ["6", "7", "8", "9"]
    assert sub.dropped == 6
    assert len(errors) == 1 and errors[0].source == "slowpoke" and errors[0].error_type == "BusOverflow"
    await bus.close()


async def test_stale_turn_events_are_dropped_before_delivery() -> None:
    bus = Bus()
    got: list[tuple[int, str]] = []
    everything: list[str] = []
    bus.subscribe(lambda e: got.append((e.turn_id, e.text)), AgentTextDelta)
    bus.subscribe(lambda e: everything.append(e.text), AgentTextDelta, drop_stale=False)
    t1 = bus.new_turn()
    bus.emit(AgentTextDelta, text="old", turn_id=t1)
    t2 = bus.new_turn()  # before the subscriber ran: "old" is stale now
    bus.emit(AgentTextDelta, text="new", turn_id=t2)
    bus.emit(AgentTextDelta, text="turnless", turn_id=0)
    await bus.idle()
    assert got == [(t2, "new"), (0, "turnless")]
    assert everything == ["old", "new", "turnless"]
    await bus.close()


async def test_failing_subscriber_is_reported_and_the_bus_goes_on() -> None:
    bus = Bus("s1")
    errors: list[ErrorRaised] = []
    healthy: list[str] = []

    def broken(event: AgentTextDelta) -> None:
        if event.text == "boom":
            raise ValueError("cannot handle boom")

    bus.subscribe(broken, AgentTextDelta, name="broken")
    bus.subscribe(lambda e: healthy.append(e.text), AgentTextDelta)
    bus.subscribe(errors.append, ErrorRaised)
    for text in ["ok", "boom", "after"]:
        bus.emit(AgentTextDelta, text=text)
    await bus.idle()
    assert healthy == ["ok", "boom", "after"]
    assert [(e.source, e.error_type, e.session_id) for e in errors] == [("broken", "ValueError", "s1")]
    assert "cannot handle boom" in errors[0].message
    assert next(s for s in bus.subscriptions() if s.name == "broken").delivered == 2
    await bus.close()


async def test_failing_error_handler_does_not_start_an_error_storm() -> None:
    bus = Bus()
    calls = 0

    def bad_error_handler(event: ErrorRaised) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("error handler broken")

    bus.subscribe(bad_error_handler, ErrorRaised)
    bus.emit(ErrorRaised, source="x", message="first")
    await bus.idle()
    await asyncio.sleep(0.01)
    assert calls == 1
    await bus.close()


async def test_close_cancels_and_awaits_every_task_it_owns() -> None:
    bus = Bus()
    cancelled = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def slow_handler(event: Event) -> None:
        await asyncio.sleep(3600)

    bus.subscribe(slow_handler, AgentTextDelta)
    bus.emit(AgentTextDelta, text="x")
    task = bus.spawn(forever(), name="forever")
    await asyncio.sleep(0.01)
    assert bus.tasks == 2
    before = len(asyncio.all_tasks())
    await bus.close()
    assert cancelled.is_set() and task.done()
    assert bus.tasks == 0
    assert len(asyncio.all_tasks()) == before - 2
    bus.emit(AgentTextDelta, text="after close")  # a no-op, not an error
    with pytest.raises(RuntimeError, match="closed"):
        bus.subscribe(print)


async def test_spawned_task_failure_becomes_an_error_event() -> None:
    bus = Bus("s9")
    errors: list[ErrorRaised] = []
    bus.subscribe(errors.append, ErrorRaised)

    async def fails() -> None:
        raise KeyError("missing")

    bus.spawn(fails(), name="worker")
    await asyncio.sleep(0.01)
    await bus.idle()
    assert [(e.source, e.error_type) for e in errors] == [("worker", "KeyError")]
    await bus.close()


async def test_idle_sync_subscriber_is_served_inside_publish_and_never_re_entered() -> None:
    bus = Bus()
    got: list[str] = []
    depth = 0
    max_depth = 0

    def echo(event: AgentTextDelta) -> None:
        nonlocal depth, max_depth
        depth += 1
        max_depth = max(max_depth, depth)
        got.append(event.text)
        if len(event.text) < 3:
            bus.emit(AgentTextDelta, text=event.text + "+")  # to itself: must queue, not recurse
        depth -= 1

    bus.subscribe(echo, AgentTextDelta)
    await asyncio.sleep(0)  # let the subscriber park
    bus.emit(AgentTextDelta, text="a")
    assert got == ["a"]  # delivered inside publish(): no task switch needed
    await bus.idle()
    assert got == ["a", "a+", "a++"] and max_depth == 1
    await bus.close()
