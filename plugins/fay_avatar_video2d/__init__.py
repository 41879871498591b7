"""Built-in avatar renderer ``video2d``: a 2D talking portrait as a WebRTC video track (25 fps by default).

The portrait is drawn by code (:mod:`fay_core.avatar.portrait`: licence-clean, with a visible "AI-GENERATED"
label in every frame) from the same timeline as the other renderers, and the frames are released by the playout
clock with their audio's PTS (:mod:`fay_core.avatar.video`). The transport adds ``session.avatar.video_track`` to
the peer connection; the browser shows it with ``web/avatars/video2d.js``.

**GPU backends (Wav2Lip, MuseTalk, ...)** implement the same contract in their own plugin:

1. ``register_avatar_renderers(register)`` → ``register("musetalk", factory, settings="musetalk")``; the factory
   loads the model once (shared by sessions) from a local directory or the usual download path.
2. ``start(session)`` returns a stream with ``info = RendererInfo(name, kind="video")``, ``video_track`` and
   ``stop()``. It gets audio from ``session.voice.playout.add_listener(cb)`` (``cb(pcm, pts, turn_id)`` for each
   released 20 ms frame) or, with lookahead, from ``SpeechSynthesized`` events (``pcm``, ``pts``), and may use
   :func:`fay_core.avatar.timeline_for` for blinks, head motion and expressions.
3. Its ``video_track.recv()`` returns the frame generated for the latest released audio PTS (``frame.pts =
   round(pts * 90000)``), so lips stay within ±40 ms of the sound; model inference runs ahead on the
   ``SpeechSynthesized`` audio (Wav2Lip and MuseTalk work on mel windows of ~200 ms) in a worker, and
   ``Interrupted`` discards frames not yet released, exactly as the timeline does. Such a backend must still draw
   the "AI-generated" mark into its frames.

Persona options: ``fps`` (default 25), ``width``/``height`` (default 384x480), ``head_motion_deg``.
"""

from __future__ import annotations

from typing import Any

from fay_core import hookimpl

NAME = "video2d"


def _factory() -> Any:
    from fay_core.avatar.portrait import Portrait
    from fay_core.avatar.renderer import timeline_for
    from fay_core.avatar.rig import AvatarState
    from fay_core.avatar.video import TimelineVideoTrack
    from fay_core.engines import RendererInfo
    from fay_core.errors import PluginError

    class Video2DStream:
        """The portrait video of one session."""

        def __init__(self, info: RendererInfo, session: Any, portrait: Portrait, fps: int) -> None:
            self.info = info
            self.timeline = timeline_for(session)
            self.video_track = TimelineVideoTrack(portrait.render, fps=fps)
            self._every = max(1, round(50 / fps))
            self._n = 0
            self.timeline.add_sink(self._on_state)

        def header(self) -> None:
            return None

        def _on_state(self, state: AvatarState) -> None:
            self._n += 1
            if self._n % self._every == 0:
                self.video_track.push(state)

        async def stop(self) -> None:
            self.timeline.remove_sink(self._on_state)
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

        async def start(self, session: Any) -> Video2DStream:
            opts = session.persona.avatar.options or {}
            try:
                fps = int(opts.get("fps", 25))
                width, height = int(opts.get("width", 384)), int(opts.get("height", 480))
                portrait = self.portrait(width, height)
            except (TypeError, ValueError) as exc:
                raise PluginError(f"persona {session.persona.id!r}: bad avatar.options for video2d: {exc}") from None
            if fps not in (10, 25, 50):
                raise PluginError(f"video2d fps must be 10, 25 or 50 (a divisor of the 50 Hz playout clock), not {fps}")
            return Video2DStream(self.info, session, portrait, fps)

    return Video2DRenderer()


@hookimpl
def register_avatar_renderers(register):  # type: ignore[no-untyped-def]
    register(NAME, _factory)

