"""Renderer plumbing shared by the built-in avatar renderers, and :func:`attach_avatar`.

A renderer plugin registers a factory under ``register_avatar_renderers``; the factory's object (shared by all
sessions) satisfies :class:`~fay_core.engines.AvatarRenderer`: ``info`` and ``start(session)``, which returns the
session's :class:`~fay_core.engines.AvatarStream`, stored as ``session.avatar``.

Two kinds of renderer:

- **data** (:class:`ParameterRenderer`): each timeline frame becomes one binary frame of the parameter stream
  (:mod:`fay_core.avatar.stream`), published on the bus as ``AvatarFrame(renderer=..., pts=..., payload=bytes)``;
  the transport sends the payload unchanged on the data channel. Subclasses give the channel table and
  ``values(state)``.
- **video** (:class:`~fay_core.avatar.video.TimelineVideoTrack`): an aiortc video track whose frames are drawn from
  the timeline; the transport adds ``session.avatar.video_track`` to the peer connection.

A GPU backend (Wav2Lip, MuseTalk, ...) implements the same contract as the 2D video renderer: ``start(session)``
builds a :class:`~fay_core.avatar.timeline.AnimationTimeline` (or just listens to the playout for the audio it
needs), and returns a stream whose ``video_track.recv()`` returns the frame for the latest released audio PTS.
See ``plugins/fay_avatar_video2d/``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from ..engines import AvatarStream, RendererInfo
from ..errors import PluginError
from ..events import AvatarFrame
from .rig import AvatarState
from .stream import FLAG_RESET, FLAG_SPEAKING, Channel, StreamEncoder
from .timeline import AnimationTimeline

log = logging.getLogger(__name__)

HEADER_EVERY_S = 5.0  #: the stream header is re-sent this often, for clients that join late
HEADER_EARLY_EVERY_S = 0.5  #: ... and this often during the first seconds, while the client connects
HEADER_EARLY_FOR_S = 10.0


def timeline_for(session: Any) -> AnimationTimeline:
    """The session's timeline, created and started on first use (one per session, shared by its renderers)."""
    tl = getattr(session, "avatar_timeline", None)
    if tl is None:
        tl = AnimationTimeline(session.bus, **_timeline_options(session))
        tl.start(session)
        session.avatar_timeline = tl
    return tl


def _timeline_options(session: Any) -> dict[str, Any]:
    opts = getattr(getattr(getattr(session, "persona", None), "avatar", None), "options", None) or {}
    out: dict[str, Any] = {}
    if "head_motion_deg" in opts:
        out["head_amplitude_deg"] = float(opts["head_motion_deg"])
    return out


class ParameterStream:
    """A data renderer running for one session: timeline frames → binary frames → ``AvatarFrame`` events."""

    video_track = None

    def __init__(self, renderer: ParameterRenderer, session: Any, fps: int) -> None:
        self.renderer = renderer
        self.info = renderer.info
        self.session = session
        self.bus = session.bus
        self.encoder = StreamEncoder(renderer.info.name, renderer.channels, fps=fps)
        self.timeline = timeline_for(session)
        self.frame_s = 1.0 / fps
        self._next_pts: float | None = None
        self._started = time.monotonic()
        self._next_header = 0.0
        self.bytes_sent = 0
        self.frames_sent = 0
        self.timeline.add_sink(self._on_state)

    def header(self) -> bytes:
        return self.encoder.header()

    def _publish(self, payload: bytes, pts: float, turn_id: int = 0) -> None:
        self.bytes_sent += len(payload)
        self.bus.publish(AvatarFrame(session_id=self.bus.session_id, turn_id=turn_id, renderer=self.info.name,
                                     pts=pts, payload=payload))

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
        self.timeline.remove_sink(self._on_state)


class ParameterRenderer:
    """Base of data renderers: subclasses set ``info`` and ``channels`` and implement :meth:`values`."""

    info: RendererInfo
    channels: tuple[Channel, ...] = ()
    default_fps = 50

    def values(self, state: AvatarState) -> np.ndarray:
        """One float per channel for ``state``."""
        raise NotImplementedError

    def fps_for(self, session: Any) -> int:
        opts = getattr(getattr(getattr(session, "persona", None), "avatar", None), "options", None) or {}
        fps = int(opts.get("fps", self.default_fps))
        if not 1 <= fps <= 60:
            raise PluginError(f"avatar.options.fps must be between 1 and 60, got {fps}")
        return fps

    async def start(self, session: Any) -> ParameterStream:
        return ParameterStream(self, session, self.fps_for(session))


async def attach_avatar(session: Any) -> AvatarStream | None:
    """Start the persona's renderer (``persona.avatar.renderer``) on ``session``; idempotent. ``Session.start`` calls it.

    Returns the stream (also set as ``session.avatar``), or ``None`` for ``renderer: none``. Raises
    :class:`~fay_core.errors.PluginError` naming the installed renderers if the persona names an unknown one.
    """
    existing = getattr(session, "avatar", None)
    if existing is not None:
        return existing
    name = session.persona.avatar.renderer
    if not name or name == "none":
        return None
    renderer = session.app.plugins.engine("renderer", name)
    stream: AvatarStream = await renderer.start(session)
    session.avatar = stream

    async def _stop() -> None:
        await stream.stop()
        tl = getattr(session, "avatar_timeline", None)
        if tl is not None:
            await tl.stop()

    session.on_close(_stop)
    return stream
