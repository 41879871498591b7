"""Media tracks: microphone audio in (to the bus, 16 kHz mono), camera frames in (personas with ``vision``) and
answer audio out (from the playout clock).

- :func:`pump_video` reads a remote aiortc video track (decoded by aiortc in its own thread), keeps at most
  ``fps`` frames a second, scales each kept one down to :data:`MAX_WIDTH` in a worker thread and publishes it as
  :class:`~fay_core.events.CameraFrameReceived`; the others are dropped as they come, so nothing queues up and
  nothing heavy runs on the event loop the audio shares. A frame that cannot be converted is counted and skipped.
- :func:`pump_audio` reads a remote aiortc audio track (48 kHz stereo s16, 20 ms frames), resamples it to
  16 kHz mono and publishes :class:`~fay_core.events.AudioReceived` on the session's bus.
- :class:`PlayoutTrack` is the outgoing audio track. The voice pipeline's playout clock calls :meth:`push` for
  every 20 ms frame it releases (silence included), so the clock does the pacing; the track only hands frames to
  aiortc's sender through a short queue. If the sender falls behind, the oldest frames are dropped (and counted),
  so latency never builds up.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ..bus import Bus
from ..events import AudioReceived, CameraFrameReceived

log = logging.getLogger(__name__)

IN_RATE = 16000
#: camera frames are scaled down to at most this width before anyone looks at them
MAX_WIDTH = 640


@dataclass(slots=True)
class VideoInStats:
    """What :func:`pump_video` did with a camera track's frames."""

    received: int = 0  #: frames aiortc decoded and handed over
    published: int = 0  #: frames published on the bus (at most ``fps`` a second)
    skipped: int = 0  #: frames dropped to keep the rate
    bad: int = 0  #: frames that could not be converted (or were not video frames)


def frame_image(frame: av.VideoFrame, max_width: int = MAX_WIDTH) -> np.ndarray:
    """``frame`` as an ``(h, w, 3)`` uint8 BGR array, scaled down to at most ``max_width`` wide (aspect kept)."""
    width, height = frame.width, frame.height
    if width <= 0 or height <= 0:
        raise ValueError(f"a {width}x{height} video frame")
    if width > max_width:
        width, height = max_width, max(2, round(height * max_width / width))
    image: np.ndarray = frame.to_ndarray(width=width, height=height, format="bgr24")
    return image


async def pump_video(track: MediaStreamTrack, bus: Bus, fps: float, *, max_width: int = MAX_WIDTH,
                     stats: VideoInStats | None = None) -> None:
    """Publish at most ``fps`` frames a second of ``track`` on ``bus`` as ``CameraFrameReceived`` until it ends.

    Frames are picked by arrival time (a frame is kept when ``1/fps`` has passed since the last kept one), the
    rest dropped at once; ``pts`` is the frame's own time in seconds (arrival time if it has none).
    """
    stats = stats if stats is not None else VideoInStats()
    loop = asyncio.get_running_loop()
    period = 1.0 / fps
    due = 0.0
    session_id = bus.session_id
    while True:
        try:
            frame: Any = await track.recv()
        except MediaStreamError:
            return
        except Exception as exc:  # a broken track ends the camera, never the session
            log.warning("session %s: the camera track failed, no more frames: %s: %s", session_id,
                        type(exc).__name__, exc)
            return
        stats.received += 1
        if not isinstance(frame, av.VideoFrame):
            stats.bad += 1
            continue
        now = loop.time()
        if now < due:
            stats.skipped += 1
            continue
        due = now + period
        try:
            image = await loop.run_in_executor(None, frame_image, frame, max_width)
        except Exception as exc:  # a broken frame: skip it, keep the track
            stats.bad += 1
            if stats.bad == 1:
                log.info("session %s: a camera frame could not be converted: %s: %s", session_id,
                         type(exc).__name__, exc)
            continue
        pts = float(frame.time) if frame.time is not None else now
        bus.publish(CameraFrameReceived(session_id=session_id, image=image, pts=pts))
        stats.published += 1


async def pump_audio(track: MediaStreamTrack, bus: Bus) -> None:
    """Publish ``track``'s audio on ``bus`` as 16 kHz mono ``AudioReceived`` until the track ends."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=IN_RATE)
    samples = 0
    session_id = bus.session_id
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        if not isinstance(frame, av.AudioFrame):
            continue
        for out in resampler.resample(frame):
            pcm = out.to_ndarray().tobytes()
            bus.publish(AudioReceived(session_id=session_id, pcm=pcm, sample_rate=IN_RATE, pts=samples / IN_RATE))
            samples += out.samples


class PlayoutTrack(MediaStreamTrack):
    """The answer audio sent to the peer; fed by :meth:`push` (a playout-clock listener)."""

    kind = "audio"

    def __init__(self, sample_rate: int = 48000, max_frames: int = 10) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.time_base = fractions.Fraction(1, sample_rate)
        self._queue: deque[tuple[bytes, int]] = deque(maxlen=max_frames)
        self._waiter: asyncio.Future[None] | None = None
        self._samples = 0
        self.frames_in = 0
        self.frames_out = 0
        self.dropped = 0
        self.last_turn = 0

    def push(self, pcm: bytes, pts: float = 0.0, turn_id: int = 0) -> None:
        """Queue one frame of 16-bit mono PCM at :attr:`sample_rate` (the playout listener signature)."""
        if self.readyState != "live":
            return
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        self._queue.append((pcm, turn_id))
        self.frames_in += 1
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def recv(self) -> av.AudioFrame:
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        pcm, turn_id = self._queue.popleft()
        samples = np.frombuffer(pcm, dtype=np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = self.sample_rate
        frame.pts = self._samples
        frame.time_base = self.time_base
        self._samples += samples.shape[1]
        self.frames_out += 1
        self.last_turn = turn_id
        return frame

    def stop(self) -> None:
        super().stop()
        self._queue.clear()
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)
