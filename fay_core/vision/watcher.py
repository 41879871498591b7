"""The session's vision watcher: looks at camera frames with a processor and publishes presence and faces."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from ..bus import Bus, Subscription
from ..engines import VisionProcessor
from ..events import CameraFrameReceived, ErrorRaised, Face, FaceTracked, UserArrived, UserLeft
from ..persona import Persona, VisionConfig, localized
from .look import LatestFrame
from .presence import Presence

log = logging.getLogger(__name__)

#: what a persona without a ``greeting`` says when a visitor arrives
DEFAULT_GREETING = {"en": "Hello! How can I help you?", "zh": "您好！请问有什么可以帮您？"}
#: what the page tells a visitor before it asks for the camera, for a persona without ``vision.notice``
DEFAULT_CAMERA_NOTICE = {
    "en": "This assistant uses your camera only to notice when someone is in front of it and to look at you. "
          "Nothing is recorded or stored, and no one is identified. You can say no and still talk or type.",
    "zh": "本助手使用摄像头仅为了察觉有人在面前并看向您。不录制、不保存任何画面，也不识别身份。"
          "您可以拒绝，仍可语音或文字交流。",
}


def camera_offer(persona: Persona) -> dict[str, object]:
    """What a client needs to ask for the camera: ``{"enabled", "notice", "greet_on_arrival"}`` (the notice empty
    when not enabled; with ``greet_on_arrival`` the greeting is said when a visitor arrives, not shown at once)."""
    vision = persona.vision
    if not vision.enabled:
        return {"enabled": False, "notice": "", "greet_on_arrival": False}
    return {"enabled": True, "notice": localized(vision.notice, persona.language, DEFAULT_CAMERA_NOTICE),
            "greet_on_arrival": vision.greet_on_arrival}


class VisionWatcher:
    """Looks at one session's camera frames (``CameraFrameReceived``) and publishes what it sees.

    At most one frame is being looked at at a time, in a worker thread; a frame that comes meanwhile is dropped
    (counted in :attr:`dropped`), never queued, so a slow processor only lowers the rate it sees frames at.
    ``on_arrival()`` is called when a visitor arrives, ``on_leave(reason)`` ``config.leave_after_s`` after the
    visitor left, unless someone arrived meanwhile. Every frame, dropped or not, is handed to ``frames`` (which
    keeps only the latest, for a look on request: :mod:`fay_core.vision.look`).
    """

    def __init__(self, bus: Bus, config: VisionConfig, processor: VisionProcessor, *,
                 on_arrival: Callable[[], None] | None = None,
                 on_leave: Callable[[str], None] | None = None,
                 frames: LatestFrame | None = None) -> None:
        self.bus = bus
        self.config = config
        self.processor = processor
        self.presence = Presence(config.arrive_s, config.absent_s)
        self.on_arrival = on_arrival
        self.on_leave = on_leave
        self.frames = frames
        self.looked = 0  #: frames looked at
        self.dropped = 0  #: frames dropped because the previous one was still being looked at
        self.cpu_s = 0.0  #: thread CPU time the processor used, in all
        self.last: Face | None = None  #: the largest face of the last frame looked at
        self._busy = False
        self._failed = False
        self._leave: asyncio.Task[None] | None = None
        self._sub: Subscription | None = None

    @property
    def present(self) -> bool:
        """Whether a visitor is in front of the camera now."""
        return self.presence.present

    def start(self) -> None:
        self._sub = self.bus.subscribe(self._on_frame, CameraFrameReceived, name="vision.frames", drop_stale=False)

    async def stop(self) -> None:
        if self._sub is not None:
            await self.bus.unsubscribe(self._sub)
            self._sub = None
        if self._leave is not None:
            self._leave.cancel()
        if self.frames is not None:
            self.frames.clear()

    def _on_frame(self, ev: CameraFrameReceived) -> None:
        if self.frames is not None:
            self.frames.keep(ev)
        if self._busy:
            self.dropped += 1
            return
        self._busy = True
        self.bus.spawn(self._look(ev), name="vision.look")

    async def _look(self, ev: CameraFrameReceived) -> None:
        try:
            faces = await asyncio.get_running_loop().run_in_executor(None, self._faces, ev.image)
        except Exception as exc:  # a failing processor: reported once, the frame counts as empty
            faces = []
            if not self._failed:
                self._failed = True
                log.warning("session %s: vision processor %s failed: %s", self.bus.session_id,
                            self.processor.name, exc)
                self.bus.publish(ErrorRaised.of(exc, session_id=self.bus.session_id, source="vision"))
        finally:
            self._busy = False
        self.looked += 1
        self.seen(faces[0] if faces else None, ev.pts)

    def _faces(self, image: Any) -> list[Face]:
        t0 = time.thread_time()
        try:
            return list(self.processor.faces(image))
        finally:
            self.cpu_s += time.thread_time() - t0

    def seen(self, face: Face | None, pts: float) -> None:
        """Take the largest face of a frame at ``pts`` (``None``: no face): publish it, and what it changes."""
        bus = self.bus
        sid = bus.session_id
        self.last = face
        bus.publish(FaceTracked(session_id=sid, face=face, pts=pts))
        change = self.presence.update(face is not None, pts)
        if change == "arrived" and face is not None:
            if self._leave is not None:
                self._leave.cancel()
                self._leave = None
            bus.publish(UserArrived(session_id=sid, face=face, pts=pts))
            if self.on_arrival is not None:
                self.on_arrival()
        elif change == "left":
            stayed = max(0.0, self.presence.stayed_s(pts) - self.config.absent_s)
            bus.publish(UserLeft(session_id=sid, pts=pts, stayed_s=stayed))
            after = self.config.leave_after_s
            if after is not None and self.on_leave is not None:
                self._leave = bus.spawn(self._leave_later(after), name="vision.leave")

    async def _leave_later(self, after_s: float) -> None:
        await asyncio.sleep(after_s)
        if not self.present and self.on_leave is not None:
            self.on_leave(f"the visitor left {after_s:g}s ago")
