"""Measuring lip sync at the client: the offset between what the mouth shows and what the speaker plays.

Given two series sampled in the browser on the same clock (``[[ms, value], ...]``): the loudness of the answer
audio as the page plays it, and the mouth as the viewer shows it (a jaw/mouth-open parameter, or the dark area of
the mouth in the decoded video), :func:`av_offset` finds the lag at which the mouth best matches the audio
envelope. Positive: the mouth is late; negative: it is early. ITU-R BT.1359 finds audio more than 45 ms early or
125 ms late detectable; Fay's target is ±40 ms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class SyncMeasure:
    offset_ms: float  #: mouth minus audio; positive = mouth late
    correlation: float  #: normalised cross-correlation at that lag
    speech_ms: float  #: how long the audio was loud in the measured span
    mouth_moves: int  #: times the mouth opened while the audio was loud
    mouth_in_silence: float  #: the largest mouth value once the audio has been silent for a while


def _grid(series: Sequence[Sequence[float]], grid: np.ndarray) -> np.ndarray:
    s = np.asarray(series, dtype=np.float64)
    return np.interp(grid, s[:, 0], s[:, 1])


def av_offset(
    audio: Sequence[Sequence[float]],
    mouth: Sequence[Sequence[float]],
    *,
    start_ms: float | None = None,
    max_lag_ms: float = 400.0,
    step_ms: float = 5.0,
    loud: float = 0.01,
    open_at: float | None = None,
    quiet_after_ms: float = 700.0,
) -> SyncMeasure:
    """The A/V offset of ``mouth`` against ``audio`` (both ``[[ms, value], ...]``), from ``start_ms`` on."""
    if len(audio) < 10 or len(mouth) < 10:
        raise ValueError("need at least 10 samples of audio and of mouth to measure an offset")
    t0 = max(audio[0][0], mouth[0][0], start_ms if start_ms is not None else -np.inf)
    t1 = min(audio[-1][0], mouth[-1][0])
    if t1 - t0 < 1000:
        raise ValueError(f"only {t1 - t0:.0f} ms of overlapping samples: need at least a second")
    grid = np.arange(t0, t1, step_ms)
    env = _grid(audio, grid)
    k = max(1, int(30 / step_ms))  # a 30 ms loudness envelope
    env = np.convolve(env, np.ones(k) / k, mode="same")
    m = _grid(mouth, grid)
    x = (env - env.mean()) / (env.std() + 1e-12)
    y = (m - m.mean()) / (m.std() + 1e-12)
    n = len(grid)
    lags = np.arange(-int(max_lag_ms / step_ms), int(max_lag_ms / step_ms) + 1)
    corr = np.array(
        [np.dot(x[max(0, -lag) : n - max(0, lag)], y[max(0, lag) : n - max(0, -lag)]) / (n - abs(lag)) for lag in
         lags.tolist()]
    )
    best = int(np.argmax(corr))
    speaking = env > loud
    threshold = open_at if open_at is not None else 0.3 * float(m.max())
    opened = (m > threshold).astype(int)
    moves = int(np.count_nonzero((np.diff(opened) == 1) & speaking[1:]))
    # silence: from ``quiet_after_ms`` after the last loud sample (a sentence's quiet tail may still open the mouth)
    last_loud = grid[speaking][-1] if speaking.any() else grid[0]
    quiet = grid > last_loud + quiet_after_ms
    return SyncMeasure(
        offset_ms=float(lags[best] * step_ms),
        correlation=float(corr[best]),
        speech_ms=float(speaking.sum() * step_ms),
        mouth_moves=moves,
        mouth_in_silence=float(m[quiet].max()) if quiet.any() else float("nan"),
    )
