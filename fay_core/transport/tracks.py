"""Media tracks: microphone audio in (to the bus, 16 kHz mono) and answer audio out (from the playout clock).

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
from collections import deque

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ..bus import Bus
from ..events import AudioReceived

IN_RATE = 16000


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
