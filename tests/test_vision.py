"""The camera: the persona's ``vision`` block, OpenCV's face detector on a public-domain photo, presence with
hysteresis, the greeting on arrival, listening only while someone is there, gaze, and a huge or broken camera
track next to the microphone's audio (which must come through whole and in order).

The face is scikit-image's ``astronaut()`` (public domain), placed by :mod:`fay_core.vision.scenes`.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack, VideoStreamTrack
from aiohttp.test_utils import TestServer

import fay_opencv
from fay_core.app import Fay
from fay_core.transport.client import FayClient
from fay_core.avatar.live2d import LIVE2D_CHANNELS, live2d_values
from fay_core.avatar.rig import head_angles
from fay_core.avatar.timeline import FRAME_S, GAZE_YAW_DEG, AnimationTimeline
from fay_core.bus import Bus
from fay_core.errors import PersonaError
from fay_core.events import (
    AgentTurnFinished,
    AudioReceived,
    CameraFrameReceived,
    ErrorRaised,
    Face,
    FaceTracked,
    UserArrived,
    UserLeft,
)
from fay_core.persona import VisionConfig, parse_persona
from fay_core.server import create_app
from fay_core.session import Session
from fay_core.testing import Recorder, test_settings
from fay_core.transport.tracks import VideoInStats, pump_audio, pump_video
from fay_core.vision import Presence, VisionWatcher, scenes
from fay_core.voice.audio import load_audio
from fay_core.voice.pipeline import VoicePipeline

KIOSK = """\
name: Kiosk
language: en
greeting: Hello, I'm Ava at the kiosk.
vision:
  enabled: true
  listen_only_when_present: true
  arrive_s: 0.4
  absent_s: 1.0
knowledge:
  only: true
"""


@pytest.fixture(scope="module")
def haar() -> fay_opencv.HaarFaces:
    return fay_opencv.HaarFaces()


def test_vision_block_is_off_by_default_and_checked(tmp_path: Path) -> None:
    plain = parse_persona("name: Ava\n", tmp_path / "ava.yaml")
    assert plain.vision.enabled is False and plain.vision.fps == 2.0
    kiosk = parse_persona(KIOSK, tmp_path / "kiosk.yaml")
    assert kiosk.vision.enabled and kiosk.vision.listen_only_when_present and kiosk.vision.leave_after_s is None
    with pytest.raises(PersonaError, match=r"kiosk.yaml:2: vision.fps"):
        parse_persona("name: Ava\nvision: {fps: 0}\n", tmp_path / "kiosk.yaml")
    with pytest.raises(PersonaError, match=r"vision.fpz: unknown field \(allowed: .*fps"):
        parse_persona("name: Ava\nvision: {fpz: 2}\n", tmp_path / "kiosk.yaml")


def test_presence_has_hysteresis() -> None:
    p = Presence(arrive_s=0.4, absent_s=1.0)
    assert p.update(True, 0.0) is None  # one glimpse is not a visitor
    assert p.update(False, 0.5) is None  # a miss shorter than absent_s does not restart the count
    assert p.update(True, 1.0) == "arrived" and p.present
    assert p.update(False, 1.5) is None and p.update(False, 1.9) is None  # a detector blinking: still there
    assert p.update(True, 2.0) is None
    assert p.update(False, 2.5) is None
    assert p.update(False, 3.0) == "left" and not p.present
    assert p.update(False, 9.0) is None
    assert p.update(True, 10.0) is None and p.update(True, 10.5) == "arrived"


def test_opencv_finds_the_face_and_where_it_is(haar: fay_opencv.HaarFaces) -> None:
    left, right = haar.faces(scenes.frame(-0.5)), haar.faces(scenes.frame(0.5))
    assert left and right
    assert left[0].x == pytest.approx(-0.5, abs=0.1) and right[0].x == pytest.approx(0.5, abs=0.1)
    assert 0.05 < left[0].size < 0.3 and -1 < left[0].y < 0
    assert haar.faces(scenes.frame(None)) == []
    assert haar.faces(np.zeros((8, 8, 3), dtype=np.uint8)) == []  # too small to hold a face: nothing, no error


async def test_watcher_publishes_arrival_then_leaving_and_drops_frames_while_busy(
    haar: fay_opencv.HaarFaces,
) -> None:
    bus = Bus("vision-test")
    config = VisionConfig(enabled=True, arrive_s=0.4, absent_s=1.0, leave_after_s=0.05)
    arrivals: list[float] = []
    leaves: list[str] = []
    watcher = VisionWatcher(bus, config, haar, on_arrival=lambda: arrivals.append(time.monotonic()),
                            on_leave=leaves.append)
    watcher.start()
    rec = Recorder(bus)
    try:
        pts = 0.0
        for _where, image in scenes.walk(2, lead_s=1.0, left_s=1.5, right_s=1.5, empty_s=2.0):
            bus.publish(CameraFrameReceived(session_id=bus.session_id, image=image, pts=pts))
            await rec.wait(FaceTracked, lambda e, t=pts: e.pts == t, within=10)
            pts += 0.5
        arrived, left = rec.of(UserArrived), rec.of(UserLeft)
        assert len(arrived) == 1 and len(left) == 1 and len(arrivals) == 1
        assert arrived[0].pts == pytest.approx(1.5) and arrived[0].face.x < -0.3  # the second frame with a face
        assert rec.events.index(arrived[0]) < rec.events.index(left[0])
        tracked = [e.face.x for e in rec.of(FaceTracked) if e.face is not None]
        assert tracked[0] < -0.3 and tracked[-1] > 0.3  # the face moved from the left to the right
        await asyncio.sleep(0.2)
        assert leaves == ["the visitor left 0.05s ago"]
        # frames that come while one is being looked at are dropped, not queued
        looked = watcher.looked
        for i in range(5):
            bus.publish(CameraFrameReceived(session_id=bus.session_id, image=scenes.frame(0.0), pts=100.0 + i))
        await rec.wait(FaceTracked, lambda e: e.pts == 100.0)
        await bus.idle()
        assert watcher.dropped == 4 and watcher.looked == looked + 1
        assert not rec.of(ErrorRaised)
    finally:
        await watcher.stop()
        await bus.close()


async def test_the_head_turns_towards_the_face_smoothly() -> None:
    bus = Bus("gaze-test")
    timeline = AnimationTimeline(bus, seed=7, gaze=True)
    timeline.start()  # its own 50 Hz clock: no voice in this test
    idle = AnimationTimeline(Bus("idle"), seed=7).idle

    def gaze_yaw() -> float:
        st = timeline.last
        assert st is not None
        return st.head_yaw - idle.pose(st.pts + FRAME_S / 2, 0.0).yaw

    try:
        await asyncio.sleep(0.1)
        assert abs(gaze_yaw()) < 1e-3
        bus.publish(FaceTracked(session_id=bus.session_id, face=Face(x=-0.5, y=0.0, size=0.1), pts=1.0))
        await asyncio.sleep(0.1)
        early = gaze_yaw()
        await asyncio.sleep(1.5)
        assert 0 < early < gaze_yaw() == pytest.approx(0.5 * GAZE_YAW_DEG, abs=0.5)  # eases, then looks left
        bus.publish(FaceTracked(session_id=bus.session_id, face=Face(x=0.5, y=0.0, size=0.1), pts=2.0))
        await asyncio.sleep(1.6)
        assert gaze_yaw() == pytest.approx(-0.5 * GAZE_YAW_DEG, abs=0.5)
        st = timeline.last
        assert st is not None and st.gaze_x < -0.1  # the eyes go with it
        # through the renderers' existing channels: the 3D head's yaw, Live2D's ParamAngleX and ParamEyeBallX
        names = [c.name for c in LIVE2D_CHANNELS]
        l2d = live2d_values(st)
        assert head_angles(st)[1] == pytest.approx(st.head_yaw) and st.head_yaw < -8
        assert l2d[names.index("ParamAngleX")] == pytest.approx(st.head_yaw)
        assert l2d[names.index("ParamEyeBallX")] == pytest.approx(st.gaze_x)
        bus.publish(UserLeft(session_id=bus.session_id, pts=3.0))
        await asyncio.sleep(1.6)
        assert abs(gaze_yaw()) < 0.5  # back to the front
    finally:
        await timeline.stop()
        await bus.close()


async def _hear(session: Session, voice: VoicePipeline, pcm: bytes) -> None:
    """A microphone frame in, and its VAD windows scored (the shared batcher scores them in its next round)."""
    session.bus.publish(AudioReceived(session_id=session.id, pcm=pcm, sample_rate=16000))
    await session.bus.idle()
    for _ in range(2500):
        if not voice.listener.pending:
            return
        await asyncio.sleep(0.002)
    raise AssertionError("the VAD scored no window for 5 s")


async def test_greets_on_arrival_and_listens_only_while_someone_is_there(tmp_path: Path, shared_data: Path) -> None:
    personas = tmp_path / "personas"
    personas.mkdir()
    (personas / "kiosk.yaml").write_text(KIOSK)
    async with Fay(test_settings(tmp_path / "data", personas_dir=personas)) as app:
        if "opencv" not in app.plugins.engines["vision"]:  # (an install older than this plugin's entry point)
            app.plugins.register(fay_opencv, "opencv")
        session = await app.create_session("kiosk")
        rec = Recorder(session.bus)
        voice = await app.assembly.add_voice(session)
        watcher = app.assembly.add_vision(session)
        assert voice.listen_gate is not None and not voice.listen_gate()
        silence = AudioReceived(session_id=session.id, pcm=bytes(640), sample_rate=16000)
        session.bus.publish(silence)
        await session.bus.idle()
        assert voice.ignored_frames == 1  # nobody there: not listened to
        face = Face(x=0.1, y=-0.2, size=0.2)
        watcher.seen(face, 0.0)
        watcher.seen(face, 0.5)
        assert voice.listen_gate()
        greeting = await rec.wait(AgentTurnFinished, within=30)
        assert greeting.text == "Hello, I'm Ava at the kiosk." and greeting.answered_by == "greeting"
        session.bus.publish(silence)
        await session.bus.idle()
        assert voice.ignored_frames == 1  # someone there: listened to
        # the visitor speaks, and walks away in the middle of it: the utterance ends there, then nothing is heard
        speech = load_audio(shared_data / "speech_en" / "english.wav", 16000)
        step, at = 640, 0  # 20 ms frames
        while not (voice.segmenter.speaking and at > 32000):  # a second into the speech
            await _hear(session, voice, speech[at:at + step])
            at += step
        watcher.seen(None, 1.0)
        watcher.seen(None, 1.6)
        assert rec.of(UserLeft) and not voice.listen_gate()
        for i in range(at, at + 64000, step):  # two more seconds of the speech, unheard
            await _hear(session, voice, speech[i:i + step])
        assert not voice.segmenter.speaking and voice.ignored_frames > 1
        await app.close_session(session.id, "test over")


class _AudioSource(MediaStreamTrack):
    """``frames`` 20 ms frames of 48 kHz stereo s16 (a counting ramp), paced in real time, then the end."""

    kind = "audio"

    def __init__(self, frames: int) -> None:
        super().__init__()
        self.frames = frames
        self.sent = 0
        self._t0: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self.sent >= self.frames:
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        self._t0 = self._t0 or loop.time()
        await asyncio.sleep(max(0.0, self._t0 + self.sent * 0.02 - loop.time()))
        samples = np.full((1, 960 * 2), 1000, dtype=np.int16)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="stereo")
        frame.sample_rate = 48000
        frame.pts = self.sent * 960
        frame.time_base = fractions.Fraction(1, 48000)
        self.sent += 1
        return frame


class _HugeBrokenVideo(MediaStreamTrack):
    """A flood of 4K frames, as fast as the loop takes them, with junk among them; then the track fails."""

    kind = "video"

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.until = time.monotonic() + seconds
        self.n = 0
        big = np.zeros((2160, 3840, 3), dtype=np.uint8)
        big[500:1700, 1000:2200] = 200
        self.frame = av.VideoFrame.from_ndarray(big, format="bgr24").reformat(format="yuv420p")

    async def recv(self) -> Any:
        await asyncio.sleep(0)
        if time.monotonic() > self.until:
            raise RuntimeError("decoder exploded")
        self.n += 1
        if self.n % 7 == 0:
            return b"not a frame"
        if self.n % 11 == 0:
            return av.AudioFrame(format="s16", layout="mono", samples=10)
        self.frame.pts = self.n * 3000
        self.frame.time_base = fractions.Fraction(1, 90000)
        return self.frame


async def test_a_huge_or_broken_camera_track_never_affects_the_audio(haar: fay_opencv.HaarFaces) -> None:
    bus = Bus("huge-video")
    audio_in = Recorder(bus, AudioReceived)
    frames_in = Recorder(bus, CameraFrameReceived)
    watcher = VisionWatcher(bus, VisionConfig(enabled=True), haar)
    watcher.start()
    stats = VideoInStats()
    audio = _AudioSource(100)  # 2 s
    video = _HugeBrokenVideo(1.5)
    try:
        audio_task = bus.spawn(pump_audio(audio, bus))
        video_task = bus.spawn(pump_video(video, bus, 2.0, stats=stats))
        await asyncio.wait_for(asyncio.gather(audio_task, video_task), 30)
        await bus.idle()
        got = audio_in.of(AudioReceived)
        pcm = b"".join(e.pcm for e in got)
        assert audio.sent == 100
        assert len(pcm) // 2 >= 100 * 320 - 320  # every frame came through (the resampler may hold back a few)
        pts = [e.pts for e in got]
        steps = [b - a for a, b in zip(pts, pts[1:], strict=False)]
        assert all(s > 0 for s in steps) and pts[-1] + len(got[-1].pcm) / 2 / 16000 == pytest.approx(
            len(pcm) / 2 / 16000)  # in order, no gap, nothing repeated
        assert stats.received > 20 and stats.skipped > stats.published  # the flood was dropped as it came ...
        assert 1 <= stats.published <= 1.5 * 2 + 2  # ... at most fps frames a second went on
        assert stats.bad >= 1  # junk is counted and skipped
        shown = frames_in.of(CameraFrameReceived)
        assert shown and all(e.image.shape == (360, 640, 3) for e in shown)  # scaled down before anyone looks
        assert watcher.looked >= 1
        print(f"video: {stats}; watcher looked at {watcher.looked}, dropped {watcher.dropped}, "
              f"processor CPU {watcher.cpu_s * 1000:.0f} ms")
    finally:
        await watcher.stop()
        await bus.close()


# --- over WebRTC ------------------------------------------------------------------------------------------------


class _Camera(VideoStreamTrack):
    """The visitor in the middle of the frame, at aiortc's default 30 fps."""

    def __init__(self) -> None:
        super().__init__()
        self.frame = av.VideoFrame.from_ndarray(scenes.frame(0.0), format="bgr24").reformat(format="yuv420p")

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        self.frame.pts, self.frame.time_base = pts, time_base
        return self.frame


def _video_direction(sdp: str) -> str:
    video = sdp.split("m=video", 1)[1].split("m=", 1)[0]
    return next(line for line in video.splitlines() if line in ("a=sendrecv", "a=sendonly", "a=recvonly",
                                                                 "a=inactive"))


async def test_a_camera_over_webrtc_is_watched_for_a_persona_that_asks_and_refused_for_others(
    tmp_path: Path,
) -> None:
    personas = tmp_path / "personas"
    personas.mkdir()
    (personas / "kiosk.yaml").write_text(KIOSK.replace("listen_only_when_present: true", "fps: 5"))
    (personas / "teller.yaml").write_text("name: Teller\nknowledge:\n  only: true\n")
    (personas / "painting.yaml").write_text("name: Painting\navatar:\n  renderer: video2d\nknowledge:\n  only: true\n")
    (personas / "portrait.yaml").write_text("name: Portrait\navatar:\n  renderer: video2d\nvision:\n  enabled: true\n"
                                            "knowledge:\n  only: true\n")
    loopback = {"host_addresses": ["127.0.0.1"], "remote_networks": ["127.0.0.0/8"]}
    fay = Fay(test_settings(tmp_path / "data", personas_dir=personas, webrtc=loopback))
    if "opencv" not in fay.plugins.engines["vision"]:  # (an install older than this plugin's entry point)
        fay.plugins.register(fay_opencv, "opencv")
    server = TestServer(create_app(fay), host="127.0.0.1")
    await server.start_server()
    try:
        url = str(server.make_url(""))
        async with FayClient(url, persona="kiosk", ice=fay.settings.webrtc, audio=False, camera=_Camera()) as c:
            assert c.ready["camera"] is True
            assert _video_direction(c.pc.remoteDescription.sdp) == "a=recvonly"
            session = fay.sessions[c.session_id]
            rec = Recorder(session.bus, UserArrived, CameraFrameReceived)
            arrived = await rec.wait(UserArrived, within=20)
            assert arrived.face.x == pytest.approx(0.0, abs=0.15)
            assert (await c.wait_for("presence"))["present"] is True
            frames = rec.of(CameraFrameReceived)
            assert frames and frames[0].image.shape == (480, 640, 3)
            assert session.vision is not None and session.vision.looked >= 2
        # a video avatar and the camera share the one video transceiver: the avatar goes out, the camera comes in
        async with FayClient(url, persona="portrait", ice=fay.settings.webrtc, audio=False, camera=_Camera()) as c:
            assert _video_direction(c.pc.remoteDescription.sdp) == "a=sendrecv"
            session = fay.sessions[c.session_id]
            rec = Recorder(session.bus, UserArrived)
            await rec.wait(UserArrived, within=20)
            for _ in range(200):
                if c.video_frames > 5:
                    break
                await asyncio.sleep(0.05)
            assert c.video_frames > 5
        # a video avatar for a persona without vision: its video still goes out, the camera is refused
        async with FayClient(url, persona="painting", ice=fay.settings.webrtc, audio=False, camera=_Camera()) as c:
            assert _video_direction(c.pc.remoteDescription.sdp) == "a=sendonly" and not c.ready["camera"]
            for _ in range(200):
                if c.video_frames > 5:
                    break
                await asyncio.sleep(0.05)
            assert c.video_frames > 5 and fay.sessions[c.session_id].vision is None
        async with FayClient(url, persona="teller", ice=fay.settings.webrtc, audio=False, camera=_Camera()) as c:
            assert c.ready["camera"] is False
            assert _video_direction(c.pc.remoteDescription.sdp) == "a=inactive"  # the browser stops sending it
            session = fay.sessions[c.session_id]
            assert session.vision is None
            c.send_text("Hello?")
            assert (await c.wait_for("answer"))["answered_by"]
    finally:
        await server.close()
