"""Many listeners per process: every session's VAD window of a round scored in one model call, off the event loop.

Scoring each session's 32 ms window with its own model call costs about 0.2 ms of the event loop's one core per
window, so a hundred sessions fill that core (and delay every turn) while the other cores idle. With an engine
that :class:`~fay_core.engines.ScoresBatches` (the built-in Silero one does), the sessions of a process share one
:class:`VADBatcher` per engine::

    session A ─ Listener.feed(pcm) ─┐
    session B ─ Listener.feed(pcm) ─┼─► VADBatcher ── one call: engine.probabilities([A, B, ...], [wa, wb, ...])
    session C ─ Listener.feed(pcm) ─┘        │        in the batcher's worker thread (the model frees the GIL)
                                             ▼
                         each session's Segmenter.advance(window, p) on the event loop ─► its speech events

A round starts when no call is running and either every attached session has a window waiting or the oldest
waiting window has waited ``wait_ms`` (``voice.vad.batch_wait_ms``): one session alone is scored at once, many
are gathered into few calls. A session with several windows waiting (a slow round) has them scored in order, one
per sub-call of the same round. The decisions are those of per-session scoring (same probabilities, same events,
same event times: each window keeps the clock of the frame that completed it).

Fail-safe: if a call raises, every session falls back to scoring its own windows with its own stream (the windows
the failed call did not score included, so nothing is lost or scored twice) and the warning says so; a model call
that has not answered after ``STUCK_S`` is abandoned the same way, each session with a fresh stream (the stuck call
may still change the old one). The engine is not batched again for ``REST_S``. A session never waits on a
batcher that is gone. There are no tasks: a round is a worker-thread future whose callback delivers the scores
and starts the next round, and the thread ends when the last session detaches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from ..engines import ScoresBatches, VADEngine
from .vad import Segmenter, VADEvent, Window

log = logging.getLogger(__name__)

#: a model call that has not answered after this many seconds is abandoned (its sessions score their own windows);
#: a slow round of several calls that each answer is not stuck
STUCK_S = 10.0
#: after a failure, an engine is not batched again for this many seconds (new sessions score their own windows)
REST_S = 60.0

EventsCallback = Callable[[list[VADEvent]], None]

_shared: dict[tuple[int, int], VADBatcher] = {}  # (id(engine), id(loop)) → the batcher of that engine there
_failed_at: dict[int, float] = {}  # id(engine) → monotonic time of its batcher's last failure


class Listener:
    """One session's VAD input: cuts its frames into windows, has them scored (by the shared batcher, or by its
    own stream when there is none or it failed) and hands each round's speech events to ``on_events``.

    With a batcher, ``on_events`` is called from the event loop after the round that scored the windows, so a
    frame's events come a little after :meth:`feed` returns; without, inside :meth:`feed`.
    """

    def __init__(self, segmenter: Segmenter, on_events: EventsCallback, batcher: VADBatcher | None = None,
                 name: str = "", on_error: Callable[[Exception], None] | None = None) -> None:
        self.segmenter = segmenter
        self.on_events = on_events
        self.on_error = on_error  #: told when ``on_events`` raises (else the log is)
        self.name = name
        self.batcher = batcher
        self.closed = False
        self._waiting: list[Window] = []  # cut, not yet sent to a round
        self._scoring: list[Window] = []  # in the running round
        if batcher is not None:
            batcher.attach(self)

    @property
    def batched(self) -> bool:
        """Whether this session's windows go to the shared batcher (False: its own stream scores them)."""
        return self.batcher is not None

    @property
    def pending(self) -> int:
        """Windows cut and not scored yet (waiting for, or in, the batcher's round)."""
        return len(self._waiting) + len(self._scoring)

    def feed(self, pcm: bytes, now: float) -> None:
        """Take microphone audio in (16 kHz, 16-bit mono, any frame size; ``now``: when its last sample came)."""
        if self.closed:
            return
        windows = self.segmenter.cut(pcm, now)
        if self.batcher is None:
            self._score_here(windows)
        elif windows:
            self._waiting.extend(windows)
            self.batcher.submit(self)

    def close(self) -> None:
        """Stop listening: nothing waiting is scored, and no more events are handed on."""
        if self.closed:
            return
        self.closed = True
        self._waiting.clear()
        if self.batcher is not None:
            self.batcher.detach(self)
            self.batcher = None

    # --- called by the batcher ----------------------------------------------------------------------------

    def _take(self) -> list[Window]:
        self._scoring, self._waiting = self._waiting, []
        return self._scoring

    def _scored(self, probabilities: list[float]) -> None:
        """The running round scored this session's first ``len(probabilities)`` windows of it, in order."""
        windows, self._scoring = self._scoring, []
        seg = self.segmenter
        events: list[VADEvent] = []
        for window, p in zip(windows, probabilities, strict=False):
            events += seg.advance(window, p)
        rest = windows[len(probabilities) :]
        if rest:  # the round failed part-way: these were not scored (their stream did not change for them)
            self._waiting[:0] = rest
        self._hand_on(events)

    def _fall_back(self, fresh: VADEngine | None) -> None:
        """The batcher is gone: score what is left, and everything from now on, with this session's own stream
        (a fresh one from ``fresh`` when a stuck call may still change the old one)."""
        self.batcher = None
        if fresh is not None:
            self.segmenter.stream = fresh.create_stream(self.segmenter.rate)
        left, self._scoring, self._waiting = self._scoring + self._waiting, [], []
        if not self.closed:
            self._score_here(left)

    def _score_here(self, windows: list[Window]) -> None:
        seg = self.segmenter
        events: list[VADEvent] = []
        for window in windows:
            events += seg.advance(window, seg.stream.probability(window.pcm))
        self._hand_on(events)

    def _hand_on(self, events: list[VADEvent]) -> None:
        if self.closed:
            return
        try:
            self.on_events(events)
        except Exception as exc:  # one session's handler must not stop the others' round
            if self.on_error is None:
                log.exception("session %s: handling speech events failed", self.name)
            else:
                self.on_error(exc)


class VADBatcher:
    """Scores the windows of every attached :class:`Listener` in few model calls of ``engine``, in one worker
    thread. Use :meth:`shared` (one per engine and event loop); see the module docstring."""

    def __init__(self, engine: ScoresBatches, *, wait_ms: float = 10.0, stuck_s: float = STUCK_S) -> None:
        self.engine = engine
        self.wait_ms = wait_ms
        self.stuck_s = stuck_s
        self.failed: str | None = None  #: why it stopped batching (then every listener scores its own windows)
        self.rounds = 0  #: rounds scored
        self.calls = 0  #: model calls (a round with a session that had several windows waiting makes several)
        self.windows = 0  #: windows scored
        self.largest = 0  #: most windows in one call
        self._listeners: dict[Listener, None] = {}  # attached, in order
        self._ready: dict[Listener, None] = {}  # with windows waiting, in order
        self._running: list[list[Listener]] | None = None  # the running round: the listeners of each call
        self._first_wait = 0.0  # loop time the oldest waiting window came
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._key: tuple[int, int] | None = None
        self._progress = 0.0  # monotonic time the running round started or its last call answered

    @classmethod
    def shared(cls, engine: Any, *, wait_ms: float = 10.0) -> VADBatcher | None:
        """The batcher of ``engine`` on the running event loop (made on first use), or None if ``engine`` cannot
        score batches here (no :class:`~fay_core.engines.ScoresBatches`, a model it cannot batch, or a failure
        less than ``REST_S`` ago)."""
        if not isinstance(engine, ScoresBatches):
            return None
        failed = _failed_at.get(id(engine))
        if failed is not None and time.monotonic() - failed < REST_S:
            return None
        key = (id(engine), id(asyncio.get_running_loop()))
        batcher = _shared.get(key)
        if batcher is not None and batcher._loop is not None and batcher._loop.is_closed():
            batcher = None  # left behind by a loop that closed with sessions open (its id was reused)
        if batcher is None:
            try:
                if not engine.batches():
                    return None
            except Exception as exc:
                log.warning("VAD engine %s cannot score batches (%s): each session scores its own windows",
                            getattr(engine, "name", engine), exc)
                _failed_at[id(engine)] = time.monotonic()
                return None
            batcher = cls(engine, wait_ms=wait_ms)
            batcher._key = key
            _shared[key] = batcher
        return batcher

    @property
    def listeners(self) -> int:
        """How many sessions are attached."""
        return len(self._listeners)

    # --- listeners ----------------------------------------------------------------------------------------

    def attach(self, listener: Listener) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self._listeners[listener] = None

    def detach(self, listener: Listener) -> None:
        self._listeners.pop(listener, None)
        self._ready.pop(listener, None)
        if not self._listeners:
            self._stop()
        elif not self._ready and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def submit(self, listener: Listener) -> None:
        """``listener`` has windows waiting: score them in the next round."""
        if listener not in self._listeners:
            listener._fall_back(None)
            return
        if not self._ready:
            self._first_wait = time.monotonic()
        self._ready[listener] = None
        self._maybe_start()

    # --- rounds -------------------------------------------------------------------------------------------

    def _maybe_start(self) -> None:
        if self._running is not None or not self._ready or self.failed:
            return
        waited_ms = (time.monotonic() - self._first_wait) * 1000
        if len(self._ready) < len(self._listeners) and waited_ms < self.wait_ms:
            if self._timer is None:
                assert self._loop is not None
                self._timer = self._loop.call_later((self.wait_ms - waited_ms) / 1000, self._on_timer)
            return
        self._start()

    def _on_timer(self) -> None:
        self._timer = None
        self._maybe_start()

    def _start(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        ready, self._ready = list(self._ready), {}
        taken = [(listener, listener._take()) for listener in ready]
        members: list[list[Listener]] = []  # call k: the listeners with a k-th window waiting, and those windows
        calls: list[tuple[list[Any], list[bytes]]] = []
        for k in range(max(len(w) for _, w in taken)):
            row = [(lis, w[k]) for lis, w in taken if len(w) > k]
            members.append([lis for lis, _ in row])
            calls.append(([lis.segmenter.stream for lis, _ in row], [w.pcm for _, w in row]))
        self._running = members
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="fay-vad-batch")
        loop = self._loop
        assert loop is not None
        self._progress = time.monotonic()
        future = self._executor.submit(self._score, calls)
        self._watchdog = loop.call_later(self.stuck_s, self._stuck, future)

        def back_on_loop(f: Future[Any]) -> None:  # (in the worker thread)
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening any more
                loop.call_soon_threadsafe(self._done, f)

        future.add_done_callback(back_on_loop)

    def _score(self, calls: list[tuple[list[Any], list[bytes]]]) -> tuple[list[list[float]], BaseException | None]:
        """In the worker thread: the scores of the calls that succeeded, in order, and the error that stopped
        the rest (or None)."""
        done: list[list[float]] = []
        for streams, frames in calls:
            try:
                scores = self.engine.probabilities(streams, frames)
                if len(scores) != len(frames):
                    raise ValueError(f"{len(scores)} scores for {len(frames)} windows")
            except BaseException as exc:
                return done, exc
            done.append(scores)
            self._progress = time.monotonic()  # (read by the watchdog on the event loop)
        return done, None

    def _done(self, future: Future[tuple[list[list[float]], BaseException | None]]) -> None:
        members = self._running
        if members is None or self.failed:  # abandoned (stuck), or everyone left
            return
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._running = None
        error: BaseException | None
        try:
            scored, error = future.result()
        except BaseException as exc:  # the executor itself failed (shut down, ...)
            scored, error = [], exc
        self.rounds += 1
        self.calls += len(scored)
        got: dict[Listener, list[float]] = {lis: [] for lis in members[0]}
        for row, scores in zip(members, scored, strict=False):
            self.windows += len(scores)
            self.largest = max(self.largest, len(scores))
            for lis, p in zip(row, scores, strict=True):
                got[lis].append(p)
        for lis, probabilities in got.items():
            if lis in self._listeners:
                lis._scored(probabilities)
        if error is not None:
            self._fail(f"{type(error).__name__}: {error}", fresh=False)
            return
        self._maybe_start()

    def _stuck(self, future: Future[Any]) -> None:
        self._watchdog = None
        if self._running is None or future.done():
            return
        quiet = time.monotonic() - self._progress
        if quiet < self.stuck_s:  # a long round whose calls keep answering
            assert self._loop is not None
            self._watchdog = self._loop.call_later(self.stuck_s - quiet, self._stuck, future)
            return
        self._fail(f"a call did not answer in {self.stuck_s:g} s", fresh=True)

    def _fail(self, why: str, *, fresh: bool) -> None:
        self.failed = why
        _failed_at[id(self.engine)] = time.monotonic()
        listeners = list(self._listeners)
        log.warning("VAD batcher of %s failed (%s): its %d session(s) score their own windows from now on, and new "
                    "sessions for %g s", getattr(self.engine, "name", self.engine), why, len(listeners), REST_S)
        self._running = None
        self._stop()
        engine = self.engine if fresh and isinstance(self.engine, VADEngine) else None
        for listener in listeners:
            listener._fall_back(engine)

    def _stop(self) -> None:
        """No one listens (or it failed): cancel the timers, let the thread end, forget this batcher."""
        for handle in (self._timer, self._watchdog):
            if handle is not None:
                handle.cancel()
        self._timer = self._watchdog = None
        self._listeners.clear()
        self._ready.clear()
        self._running = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        if self._key is not None and _shared.get(self._key) is self:
            del _shared[self._key]
