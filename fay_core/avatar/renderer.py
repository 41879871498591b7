"""Renderer plumbing shared by the built-in avatar renderers.

A renderer plugin registers a factory under ``register_avatar_renderers``; the factory's object (shared by all
sessions) satisfies :class:`~fay_core.engines.AvatarRenderer`: ``info`` and ``start(timeline, avatar)``, which
returns the session's :class:`~fay_core.engines.AvatarStream`. The session's assembly
(:mod:`fay_core.assembly`) builds the timeline, starts the persona's renderer on it, and stops both when the
session closes.

Two kinds of renderer:

- **data** (:class:`ParameterRenderer`): each timeline frame becomes one binary frame of the parameter stream
  (:mod:`fay_core.avatar.stream`), handed to the stream's listeners (``add_listener(cb)``, ``cb(payload, pts,
  turn_id)``); the transport's listener sends the payload unchanged on the data channel. Subclasses give the
  channel table and ``values(state)``.
- **video** (:class:`~fay_core.avatar.video.TimelineVideoTrack`): an aiortc video track whose frames are drawn from
  the timeline; the transport adds ``stream.video_track`` to the peer connection.

A GPU backend (Wav2Lip, MuseTalk, ...) implements the same contract as the 2D video renderer: ``start(timeline,
avatar)`` listens to the timeline (or, for the audio it needs, to ``SpeechScheduled`` events on
``timeline.bus``), and returns a stream whose ``video_track.recv()`` returns the frame for the latest released
audio PTS. See ``plugins/fay_avatar_video2d/``.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from ..engines import PayloadListener, RendererInfo, Timeline
from ..errors import PluginError
from ..persona import AvatarConfig
from .rig import AvatarState
from .stream import FLAG_RESET, FLAG_SPEAKING, Channel, StreamEncoder

log = logging.getLogger(__name__)

HEADER_EVERY_S = 5.0  #: the stream header is re-sent this often, for clients that join late
HEADER_EARLY_EVERY_S = 0.5  #: ... and this often during the first seconds, while the client connects
HEADER_EARLY_FOR_S = 10.0


class ParameterStream:
    """A data renderer running for one session: timeline frames → binary frames → the stream's listeners."""

    video_track = None

    def __init__(self, renderer: ParameterRenderer, timeline: Timeline, fps: int) -> None:
        self.renderer = renderer
        self.info = renderer.info
        self.encoder = StreamEncoder(renderer.info.name, renderer.channels, fps=fps)
        self.timeline = timeline
        self.frame_s = 1.0 / fps
        self.listeners: list[PayloadListener] = []
        self._next_pts: float | None = None
        self._started = time.monotonic()
        self._next_header = 0.0
        self.bytes_sent = 0
        self.frames_sent = 0
        self.timeline.add_listener(self._on_state)

    def header(self) -> bytes:
        return self.encoder.header()

    def add_listener(self, listener: PayloadListener) -> None:
        """Call ``listener(payload, pts, turn_id)`` with every header and frame message from now on."""
        self.listeners.append(listener)

    def remove_listener(self, listener: PayloadListener) -> None:
        if listener in self.listeners:
            self.listeners.remove(listener)

    def _publish(self, payload: bytes, pts: float, turn_id: int = 0) -> None:
        self.bytes_sent += len(payload)
        for listener in self.listeners:
            listener(payload, pts, turn_id)


    def _on_state(self, state: AvatarState) -> None:
        pts = state.pts
        now = time.monotonic()
        if now >= self._next_header:
            self._publish(self.encoder.header(), pts)
            early = now - self._started < HEADER_EARLY_FOR_S
            self._next_header = now + (HEADER_EARLY_EVERY_S if early else HEADER_EVERY_S)
        # keep to the stream's fps whatever the clock's frame (a 50 Hz clock gives 25 fps as every other frame)
        nxt = self._next_pts
        if nxt is not None and pts + 1e-6 < nxt and nxt - pts < 1.0:
            return  # not yet time for this stream's next frame
        if nxt is not None and abs(pts - nxt) < 1.0:
            self._next_pts = max(nxt + self.frame_s, pts)
        else:  # the first frame, or a new clock (the playout took over from the timeline's own)
            self._next_pts = pts + self.frame_s
        flags = (FLAG_SPEAKING if state.speaking else 0) | (FLAG_RESET if state.reset else 0)
        self._publish(self.encoder.frame(self.renderer.values(state), pts, flags), pts, state.turn_id)
        self.frames_sent += 1

    async def stop(self) -> None:
        self.timeline.remove_listener(self._on_state)
        self.listeners.clear()


class ParameterRenderer:
    """Base of data renderers: subclasses set ``info`` and ``channels`` and implement :meth:`values`."""

    info: RendererInfo
    channels: tuple[Channel, ...] = ()
    default_fps = 50

    def values(self, state: AvatarState) -> np.ndarray:
        """One float per channel for ``state``."""
        raise NotImplementedError

    def fps_for(self, avatar: AvatarConfig) -> int:
        fps = int(avatar.options.get("fps", self.default_fps))
        if not 1 <= fps <= 60:
            raise PluginError(f"avatar.options.fps must be between 1 and 60, got {fps}")
        return fps

    async def start(self, timeline: Timeline, avatar: AvatarConfig) -> ParameterStream:
        return ParameterStream(self, timeline, self.fps_for(avatar))
