"""How busy this node is: the lag of the event loop that all its sessions share.

One ``fay run`` serves every session on one asyncio event loop: WebRTC media (aiortc is Python), HTTP, answer
streams and the bus all run on it, and the engines hand their results back to it. When it runs late, every
session runs late with it: audio frames, answers, and the ICE consent checks that keep a WebRTC peer alive. On two
cores, 100 text sessions asking every few seconds beside 10 voice sessions were enough for voice peers to be
dropped and turns to go unanswered (``bench/soak.py``).

So a node measures how late its loop wakes up (:class:`LoopMonitor`) and, while that is over
``server.max_loop_lag_ms``, starts no new session (:class:`~fay_core.errors.NodeBusy`: 503 with ``Retry-After``;
a cluster places the session on another node) and goes on serving the open ones. A visitor told "busy, try again
in a moment" loses nothing; a turn accepted and then dropped loses what they said. livekit's agent workers do the
same with their load (``load_threshold``): above it a worker takes no new job.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

__all__ = ["LoopMonitor"]


class LoopMonitor:
    """Samples how late the running event loop wakes a task that sleeps ``interval_s``, over ``window_s``.

    :meth:`lag_ms` is a high quantile of those delays (a loop that is late now and then is fine; one late most of
    the time is not); :meth:`busy` compares it with a limit. Costs one wake-up per ``interval_s``.
    """

    def __init__(self, interval_s: float = 0.05, window_s: float = 5.0, quantile: float = 0.9) -> None:
        self.interval_s = interval_s
        self.window_s = window_s
        self.quantile = quantile
        self._samples: deque[tuple[float, float]] = deque()  # (loop time, seconds late)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start sampling on the running loop (again after :meth:`stop`; a second call does nothing)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="fay.loop-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.interval_s)
            now = loop.time()
            self._samples.append((now, max(0.0, now - before - self.interval_s)))
            while self._samples and self._samples[0][0] < now - self.window_s:
                self._samples.popleft()

    def lag_ms(self) -> float:
        """The loop's lag (ms) at :attr:`quantile` over the last :attr:`window_s`; 0 before any sample."""
        if not self._samples:
            return 0.0
        late = sorted(s for _, s in self._samples)
        return late[min(len(late) - 1, int(self.quantile * len(late)))] * 1000

    def busy(self, limit_ms: float) -> bool:
        """Whether the loop's lag is over ``limit_ms`` (never with a limit of 0: the check is off)."""
        return limit_ms > 0 and self.lag_ms() > limit_ms
