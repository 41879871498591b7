"""Idle life: blinks, breathing, small head motion and glances, as pure functions of time.

Everything is derived from the playout clock's PTS and a per-session seed, so a frame's idle pose depends only on
when it plays: frames can be recomputed, skipped or dropped without the motion jumping.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

BLINK_CLOSE_S = 0.06
BLINK_OPEN_S = 0.10


@dataclass(slots=True)
class IdlePose:
    blink: float
    breath: float
    pitch: float
    yaw: float
    roll: float
    gaze_x: float
    gaze_y: float


class IdleLife:
    """Deterministic idle motion for one session.

    Blinks come every 2-6 s (a double blink now and then), breathing at ~0.25 Hz, the head drifts by a few
    degrees on slow incommensurate sines, and the eyes glance aside every few seconds. While speaking the head
    moves a little more (``energy`` 0..1 is the current mouth opening).
    """

    def __init__(self, seed: int = 0, *, head_amplitude_deg: float = 2.5) -> None:
        rng = random.Random(seed)
        self.amp = head_amplitude_deg
        self._phase = [rng.uniform(0, 2 * math.pi) for _ in range(9)]
        self._breath_hz = rng.uniform(0.22, 0.28)
        self._rng = rng
        self._blinks: list[float] = []  # blink start times, increasing
        self._next_blink = rng.uniform(0.5, 2.5)
        self._glances: list[tuple[float, float, float]] = [(0.0, 0.0, 0.0)]  # (start, x, y)
        self._next_glance = rng.uniform(2.0, 5.0)

    def _plan(self, t: float) -> None:
        while self._next_blink <= t + 1.0:
            self._blinks.append(self._next_blink)
            if self._rng.random() < 0.15:
                self._blinks.append(self._next_blink + BLINK_CLOSE_S + BLINK_OPEN_S + 0.08)
            self._next_blink = self._blinks[-1] + self._rng.uniform(2.0, 6.0)
        while self._next_glance <= t + 1.0:
            away = self._rng.random() < 0.5
            x, y = (self._rng.uniform(-0.35, 0.35), self._rng.uniform(-0.15, 0.2)) if away else (0.0, 0.0)
            self._glances.append((self._next_glance, x, y))
            self._next_glance += self._rng.uniform(1.5, 4.5)
        # forget the past (keep a little for frames recomputed slightly late)
        while len(self._blinks) > 2 and self._blinks[1] < t - 2.0:
            self._blinks.pop(0)
        while len(self._glances) > 2 and self._glances[1][0] < t - 2.0:
            self._glances.pop(0)

    def blink(self, t: float) -> float:
        """Eyelid closure 0..1 at ``t``."""
        for start in self._blinks:
            d = t - start
            if 0 <= d < BLINK_CLOSE_S:
                return d / BLINK_CLOSE_S
            if BLINK_CLOSE_S <= d < BLINK_CLOSE_S + BLINK_OPEN_S:
                return 1.0 - (d - BLINK_CLOSE_S) / BLINK_OPEN_S
        return 0.0

    def pose(self, t: float, energy: float = 0.0) -> IdlePose:
        """The idle pose at playout time ``t`` (seconds)."""
        self._plan(t)
        p = self._phase
        amp = self.amp * (1.0 + 0.8 * energy)
        pitch = amp * (
            0.5 * math.sin(0.31 * t + p[0]) + 0.3 * math.sin(0.73 * t + p[1]) + 0.2 * math.sin(1.7 * t + p[2])
        )
        yaw = amp * (0.6 * math.sin(0.23 * t + p[3]) + 0.3 * math.sin(0.61 * t + p[4]) + 0.1 * math.sin(1.9 * t + p[5]))
        roll = 0.5 * amp * (0.7 * math.sin(0.19 * t + p[6]) + 0.3 * math.sin(0.53 * t + p[7]))
        breath = 0.5 - 0.5 * math.cos(2 * math.pi * self._breath_hz * t + p[8])
        pitch += 0.6 * breath  # the head rises a little with each breath
        gx, gy = 0.0, 0.0
        for start, x, y in self._glances:
            if start <= t:
                gx, gy = x, y
        return IdlePose(self.blink(t), breath, pitch, yaw, roll, gx, gy)
