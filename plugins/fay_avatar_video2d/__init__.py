"""Built-in avatar renderer ``video2d``: a 2D talking portrait as a WebRTC video track (25 fps by default).

The portrait is drawn by code (:mod:`fay_core.avatar.portrait`: licence-clean, with a visible "AI-GENERATED"
label in every frame) from the same timeline as the other renderers, and the frames are released by the playout
clock with their audio's PTS (:mod:`fay_core.avatar.video`). The transport adds the stream's ``video_track`` to
the peer connection; the browser shows it with ``web/avatars/video2d.js``.

**GPU backends (Wav2Lip, MuseTalk, ...)** implement the same contract in their own plugin:

1. ``register_avatar_renderers(register)`` → ``register("musetalk", factory, settings="musetalk")``; the factory
   loads the model once (shared by sessions) from a local directory or the usual download path.
2. ``start(timeline, avatar)`` returns a stream with ``info = RendererInfo(name, kind="video")``,
   ``video_track``, ``add_listener``/``remove_listener`` (no binary messages: do nothing) and ``stop()``. The
   timeline's listener (``timeline.add_listener(cb)``) is called for every frame the playout releases, with blinks,
   head motion and expressions; with lookahead, the audio comes from ``SpeechScheduled`` events on
   ``timeline.bus`` (``pcm``, ``pts``).
3. Its ``video_track.recv()`` returns the frame generated for the latest released audio PTS (``frame.pts =
   round(pts * 90000)``), so lips stay within ±40 ms of the sound; model inference runs ahead on the
   ``SpeechScheduled`` audio (Wav2Lip and MuseTalk work on mel windows of ~200 ms) in a worker, and
   ``Interrupted`` discards frames not yet released, exactly as the timeline does. Such a backend must still draw
   the "AI-generated" mark into its frames.

Persona options: ``fps`` (default 25), ``width``/``height`` (default 384x480), ``head_motion_deg``.
"""

from __future__ import annotations

from typing import Any

from fay_core import hookimpl
from fay_core.hookspecs import RegisterEngine

NAME = "video2d"


def _factory() -> Any:
    from fay_core.avatar.portrait import Portrait
    from fay_core.avatar.rig import AvatarState
    from fay_core.avatar.video import TimelineVideoTrack
    from fay_core.engines import PayloadListener, RendererInfo, Timeline
    from fay_core.errors import PluginError
    from fay_core.persona import AvatarConfig

    class Video2DStream:
        """The portrait video of one session."""

        def __init__(self, info: RendererInfo, timeline: Timeline, portrait: Portrait, fps: int) -> None:
            self.info = info
            self.timeline = timeline
            self.video_track = TimelineVideoTrack(portrait.render, fps=fps)
            self._every = max(1, round(50 / fps))
            self._n = 0
            self.timeline.add_listener(self._on_state)

        def header(self) -> None:
            return None

        def add_listener(self, listener: PayloadListener) -> None:
            """A video stream sends no binary messages."""

        def remove_listener(self, listener: PayloadListener) -> None:
            """A video stream sends no binary messages."""

        def _on_state(self, state: AvatarState) -> None:
            self._n += 1
            if self._n % self._every == 0:
                self.video_track.push(state)

        async def stop(self) -> None:
            self.timeline.remove_listener(self._on_state)
            self.video_track.stop()

    class Video2DRenderer:
        """The code-drawn portrait as a video track."""

        info = RendererInfo(name=NAME, kind="video", viewer=NAME, options={"label": "AI-generated"})

        def __init__(self) -> None:
            self._portraits: dict[tuple[int, int], Portrait] = {}

        def portrait(self, width: int, height: int) -> Portrait:
            key = (width, height)
            if key not in self._portraits:  # the static layers are drawn once and shared by sessions
                self._portraits[key] = Portrait(width, height)
            return self._portraits[key]

        async def start(self, timeline: Timeline, avatar: AvatarConfig) -> Video2DStream:
            opts = avatar.options
            try:
                fps = int(opts.get("fps", 25))
                width, height = int(opts.get("width", 384)), int(opts.get("height", 480))
                portrait = self.portrait(width, height)
            except (TypeError, ValueError) as exc:
                raise PluginError(f"bad avatar.options for video2d: {exc}") from None
            if fps not in (10, 25, 50):
                raise PluginError(f"video2d fps must be 10, 25 or 50 (a divisor of the 50 Hz playout clock), not {fps}")
            return Video2DStream(self.info, timeline, portrait, fps)

    return Video2DRenderer()


@hookimpl
def register_avatar_renderers(register: RegisterEngine) -> None:
    register(NAME, _factory)

