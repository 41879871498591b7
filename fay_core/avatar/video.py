"""The 2D lip-sync video: an aiortc video track whose frames are released by the playout clock.

The timeline calls the stream's sink with each state (50 per second from the playout); every ``50 / fps``-th state
is handed to the track, and ``recv()`` (awaited by aiortc's encoder task) draws it, so drawing never runs in the
playout's task. Each video frame's PTS is its audio's PTS on the 90 kHz video clock, so RTP timestamps of the
audio and video tracks follow the same playout clock.

Until the first state arrives (no playout yet) the track waits; when no consumer pulls frames, states are
simply overwritten: an idle session costs nothing to draw.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .rig import AvatarState

VIDEO_CLOCK_RATE = 90000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)

try:  # aiortc is a dependency of Fay, but keep the import failure readable
    from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
except ImportError as exc:  # pragma: no cover
    raise ImportError("the 2D video renderer needs aiortc: pip install aiortc") from exc


class TimelineVideoTrack(MediaStreamTrack):
    """A video track drawing ``draw(state) -> HxWx3 uint8 RGB`` for the states :meth:`push`-ed to it."""

    kind = "video"

    def __init__(self, draw: Callable[[AvatarState], np.ndarray], fps: int = 25) -> None:
        super().__init__()
        self.draw = draw
        self.fps = fps
        self._state: AvatarState | None = None
        self._fresh = asyncio.Event()
        self._last_pts: int | None = None
        self.frames = 0
        self.draw_seconds = 0.0

    def push(self, state: AvatarState) -> None:
        """Offer the state to draw next (called from the timeline's sink; cheap)."""
        self._state = state
        self._fresh.set()

    async def recv(self) -> Any:
        from av import VideoFrame

        if self.readyState != "live":
            raise MediaStreamError
        await self._fresh.wait()
        self._fresh.clear()
        state = self._state
        assert state is not None
        t0 = time.perf_counter()
        rgb = self.draw(state)
        frame = VideoFrame.from_ndarray(rgb, format="rgb24")
        self.draw_seconds += time.perf_counter() - t0
        pts = int(round(state.pts * VIDEO_CLOCK_RATE))
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1  # PTS must increase (a clock restarted after an interruption)
        self._last_pts = pts
        frame.pts = pts
        frame.time_base = VIDEO_TIME_BASE
        self.frames += 1
        return frame
