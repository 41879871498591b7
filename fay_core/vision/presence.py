"""Presence with hysteresis: whether someone is in front of the camera, from per-frame face sightings.

A visitor *arrives* once a face has been seen for ``arrive_s`` (misses shorter than ``absent_s`` do not restart
that count, so a detector that blinks does not delay arrival), and *leaves* once no face has been seen for
``absent_s``. Times are the video's PTS, so the result does not depend on how late frames are looked at.
"""

from __future__ import annotations

from typing import Literal

Change = Literal["arrived", "left"]


class Presence:
    """The presence state of one camera. Feed it every looked-at frame with :meth:`update`."""

    def __init__(self, arrive_s: float = 0.4, absent_s: float = 2.0) -> None:
        self.arrive_s = arrive_s
        self.absent_s = absent_s
        self.present = False
        self.arrived_at: float | None = None  #: PTS of the current visitor's arrival
        self._first_seen: float | None = None
        self._last_seen: float | None = None

    def update(self, seen: bool, pts: float) -> Change | None:
        """Take a frame at ``pts`` with (``seen``) or without a face; return the change it makes, if any."""
        if self._last_seen is not None and pts < self._last_seen:  # the stream restarted its clock
            self._first_seen = self._last_seen = None
        if seen:
            if self._first_seen is None:
                self._first_seen = pts
            self._last_seen = pts
            if not self.present and pts - self._first_seen >= self.arrive_s:
                self.present = True
                self.arrived_at = pts
                return "arrived"
            return None
        if self._last_seen is None or pts - self._last_seen < self.absent_s:
            return None
        self._first_seen = None
        if self.present:
            self.present = False
            return "left"
        return None

    def stayed_s(self, pts: float) -> float:
        """How long the current (or last) visitor was there at ``pts``."""
        return 0.0 if self.arrived_at is None else max(0.0, pts - self.arrived_at)
