"""The avatar timeline and renderers with real synthesized speech (Piper), the real playout clock and a real bus.

What is checked: mouth tracks follow the audio without lag; every frame carries the PTS of the audio frame it was
released with; an interruption discards pending mouth tracks and the mouth rests; a pause shifts what was not
played; emotion tags become expressions; idle life; the binary stream format; the three renderer plugins on real
sessions; one failing renderer never breaks the audio.
"""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fay_core.app import Fay
from fay_core.avatar import AnimationTimeline
from fay_core.avatar.lipsync import HOP_S, analyse, envelope, word_visemes
from fay_core.avatar.rig import ARKIT_52, ARKIT_INDEX, EXPRESSIONS, AvatarState, arkit_weights
from fay_core.avatar.stream import FLAG_SPEAKING, Channel, StreamEncoder, decode, decode_header
from fay_core.bus import Bus
from fay_core.engines import AudioChunk, AvatarRenderer, AvatarStream
from fay_core.errors import PluginError
from fay_core.events import AgentTextDelta, ErrorRaised
from fay_core.testing import test_settings
from fay_core.voice.audio import resample
from fay_core.voice.playout import Playout
from fay_core.voice.tts import estimate_words

ROOT = Path(__file__).resolve().parent.parent
SENTENCE = "Our branches are open from nine to five."


@pytest.fixture(scope="module")
def speech() -> tuple[bytes, int]:
    """A real sentence spoken by Piper (en_US-joe-medium, shipped in the offline extra)."""
    from fay_piper import DEFAULT_VOICE, PiperTTS

    pcm, rate = PiperTTS()._run(SENTENCE, DEFAULT_VOICE, 1.0)
    assert len(pcm) > rate  # more than half a second of speech
    return pcm, rate


def frame_db(pcm: bytes) -> float:
    s = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return 10 * np.log10(np.mean(s * s) / 32768.0**2 + 1e-12) if s.size else -120.0


class Recorder:
    """Listens to a playout like the WebRTC track does, and keeps every released frame."""

    def __init__(self) -> None:
        self.frames: list[tuple[float, float, int]] = []  # pts, dBFS, turn

    def __call__(self, pcm: bytes, pts: float, turn_id: int) -> None:
        self.frames.append((pts, frame_db(pcm), turn_id))


async def until(predicate: Any, within: float = 10.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.01)


# --- lip-sync analysis ----------------------------------------------------------------------------------------


def test_word_visemes_from_spelling() -> None:
    assert word_visemes("hello") == ["aa", "E", "nn", "oh"]
    assert word_visemes("Thank") == ["TH", "aa", "nn", "kk"]
    assert word_visemes("phone") == ["FF", "oh", "nn"]  # ph, silent final e
    assert word_visemes("银行") == []  # no letters: shapes come from the audio


def test_envelope_follows_speech_without_lag(speech: tuple[bytes, int]) -> None:
    pcm, rate = speech
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    env = envelope(samples, rate)
    hop = int(rate * HOP_S)
    n = min(len(env), len(samples) // hop)
    loud = np.array([np.sqrt(np.mean(samples[i * hop : (i + 1) * hop] ** 2)) for i in range(n)])
    db = 20 * np.log10(loud + 1e-9)
    quiet = db < db.max() - 45
    deep = quiet & np.array([quiet[max(0, i - 4) : i + 5].all() for i in range(n)])  # 40 ms from any sound
    assert deep.sum() > 10 and env[:n][deep].max() < 0.02  # silence: mouth closed
    assert np.percentile(env[:n][db > db.max() - 15], 50) > 0.5  # loud speech: mouth well open
    # the smoothing is zero-phase: the envelope lines up with the loudness at lag 0 (±1 hop)
    a, b = env[:n] - env[:n].mean(), db.clip(db.max() - 40) - db.clip(db.max() - 40).mean()
    lags = range(-10, 11)
    corr = [np.dot(a[max(0, k) : n + min(0, k)], b[max(0, -k) : n - max(0, k)]) for k in lags]
    assert abs(list(lags)[int(np.argmax(corr))]) <= 1


def test_tracks_use_word_timings_when_given(speech: tuple[bytes, int]) -> None:
    pcm, rate = speech
    words = estimate_words(SENTENCE, pcm, rate)
    with_words = analyse(pcm, rate, pts=2.0, turn_id=3, words=words)
    from_audio = analyse(pcm, rate, pts=2.0, turn_id=3)
    assert with_words.source == "words" and from_audio.source == "audio"
    assert np.array_equal(with_words.open, from_audio.open)  # loudness drives the opening either way
    first = words[0]  # "Our" → oh ou RR
    i = int(first.start_ms / 1000 / HOP_S) + 1
    from fay_core.avatar.rig import VISEMES

    assert VISEMES[with_words.viseme[i]] in ("oh", "ou", "RR")
    assert with_words.at(1.99) is None and with_words.at(2.0) is not None
    with pytest.raises(ValueError, match="sample_rate"):
        analyse(pcm, 0, pts=0.0)


# --- the stream format ----------------------------------------------------------------------------------------


def test_stream_header_and_frames_round_trip() -> None:
    channels = [Channel(n) for n in ARKIT_52] + [Channel(n, -30, 30) for n in ("headPitch", "headYaw", "headRoll")]
    enc = StreamEncoder("params3d", channels, fps=50)
    header = decode(enc.header())
    assert header.renderer == "params3d" and header.fps == 50 and [c.name for c in header.channels][:2] == [
        "eyeBlinkLeft", "eyeLookDownLeft"]
    values = np.linspace(0, 1, 55, dtype=np.float32)
    values[-3:] = (-12.5, 0.0, 29.0)
    msg = enc.frame(values, 12.34, FLAG_SPEAKING)
    assert len(msg) == 16 + 55  # 71 bytes a frame
    frame = decode(msg, header)
    assert frame.pts == 12.34 and frame.speaking and frame.seq == 0
    step = np.array([(c.max - c.min) / 255 for c in header.channels])
    assert np.all(np.abs(frame.values - values) <= step / 2 + 1e-6)
    assert decode(enc.frame(values * 9, 0.0), header).values[0] == 0.0  # clipped into range
    other = StreamEncoder("live2d", [Channel("ParamMouthOpenY")])
    with pytest.raises(ValueError, match="another stream header"):
        decode(other.frame(np.zeros(1), 0.0), header)
    with pytest.raises(ValueError, match="before its header"):
        decode(msg)
    bad = bytearray(enc.header())
    bad[1] = 9
    with pytest.raises(ValueError, match="version 9"):
        decode_header(bytes(bad))
    with pytest.raises(ValueError, match="max must be above min"):
        StreamEncoder("x", [Channel("a", 1, 1)])
    assert struct.unpack_from("<I", enc.header(), 4)[0] == enc.stream_id


# --- the timeline on the real playout clock --------------------------------------------------------------------


async def test_frames_follow_the_playout_clock_and_rest_in_silence(speech: tuple[bytes, int]) -> None:
    pcm, rate = speech
    bus = Bus("s-lipsync")
    playout = Playout(bus)
    rec = Recorder()
    playout.add_listener(rec)
    tl = AnimationTimeline(bus, seed=1)
    tl.start()
    tl.follow(playout)
    states: list[AvatarState] = []
    tl.add_listener(states.append)
    playout.start()
    await asyncio.sleep(0.2)
    turn = bus.new_turn()
    chunk = AudioChunk(pcm, rate, estimate_words(SENTENCE, pcm, rate), SENTENCE)
    start = playout.schedule(turn, chunk)
    playout.finish_turn(turn)
    duration = len(pcm) / 2 / rate
    await until(lambda: rec.frames and rec.frames[-1][0] > start + duration + 0.5, 15, "the sentence to play")
    await tl.stop()
    await bus.close()

    # one state per released audio frame, with that frame's pts
    n = min(len(rec.frames), len(states))
    assert n > 100
    assert [s.pts for s in states[:n]] == [f[0] for f in rec.frames[:n]]
    jaw = np.array([arkit_weights(s)[ARKIT_INDEX["jawOpen"]] for s in states[:n]])
    db = np.array([f[1] for f in rec.frames[:n]])
    silent = db < -60
    assert jaw[silent].max() == 0.0  # in silence the mouth rests
    assert np.percentile(jaw[db > db.max() - 12], 50) > 0.35  # while loud speech plays it is open
    # the mouth moves: many openings and closings during the sentence
    speaking = jaw[(np.array([f[0] for f in rec.frames[:n]]) >= start) & (~silent)]
    assert np.count_nonzero(np.diff((speaking > 0.3).astype(int)) == 1) >= 4
    # mouth and sound at the same pts: the cross-correlation peaks at lag 0 (±1 frame of 20 ms)
    a, b = jaw - jaw.mean(), db.clip(-60) - db.clip(-60).mean()
    lags = range(-5, 6)
    corr = [np.dot(a[max(0, k) : n + min(0, k)], b[max(0, -k) : n - max(0, k)]) for k in lags]
    assert abs(list(lags)[int(np.argmax(corr))]) <= 1
    assert all(s.turn_id in (0, turn) for s in states[:n])


async def test_interruption_discards_pending_frames(speech: tuple[bytes, int]) -> None:
    pcm, rate = speech
    bus = Bus("s-interrupt")
    playout = Playout(bus)
    rec = Recorder()
    playout.add_listener(rec)
    tl = AnimationTimeline(bus, seed=2)
    tl.start()
    tl.follow(playout)
    states: list[AvatarState] = []
    tl.add_listener(states.append)
    playout.start()
    turn = bus.new_turn()
    for _ in range(3):  # three sentences queued: several seconds of pending mouth tracks
        playout.schedule(turn, AudioChunk(pcm, rate, (), SENTENCE))
    await until(lambda: len(tl.tracks) == 3, 5, "the tracks")
    await until(lambda: any(s.speaking for s in states), 5, "speech to start")
    await asyncio.sleep(0.4)
    playout.interrupt(turn)
    await until(lambda: not tl.tracks, 2, "pending tracks to be discarded")
    cut = len(states)
    await asyncio.sleep(0.5)
    after = states[cut:]
    assert any(s.reset for s in states[cut - 3 :])  # the first frame after the cut says so
    assert after and all(s.mouth_open == 0.0 and not s.speaking for s in after)
    assert all(db < -60 for _, db, _ in rec.frames[-20:])
    await tl.stop()
    await bus.close()


async def test_pause_and_resume_shift_what_was_not_played(speech: tuple[bytes, int]) -> None:
    pcm, rate = speech
    bus = Bus("s-pause")
    playout = Playout(bus)
    tl = AnimationTimeline(bus, seed=3)
    tl.start()
    tl.follow(playout)
    states: list[AvatarState] = []
    tl.add_listener(states.append)
    playout.start()
    turn = bus.new_turn()
    start = playout.schedule(turn, AudioChunk(pcm, rate, (), SENTENCE))
    end_before = start + len(resample(pcm, rate, 48000)) / 2 / 48000
    await until(lambda: any(s.speaking for s in states), 5, "speech")
    await asyncio.sleep(0.3)
    assert playout.pause()
    n = len(states)
    await asyncio.sleep(0.3)
    assert all(not s.speaking for s in states[n + 2 :])  # silence while paused
    playout.resume()
    await until(lambda: abs(tl.tracks[-1].end - end_before) > 0.25, 2, "the track to move")
    shift = tl.tracks[-1].end - end_before
    assert 0.28 <= shift <= 0.45
    await until(lambda: any(s.speaking for s in states[n + 15 :]), 2, "speech after the resume")
    await tl.stop()
    await bus.close()


async def test_emotion_tags_become_expressions(speech: tuple[bytes, int]) -> None:
    pcm, rate = speech
    bus = Bus("s-emotion")
    playout = Playout(bus)
    tl = AnimationTimeline(bus, seed=4)
    tl.start()
    tl.follow(playout)
    states: list[AvatarState] = []
    tl.add_listener(states.append)
    playout.start()
    turn = bus.new_turn()
    bus.emit(AgentTextDelta, text="[hap")  # a tag split across deltas
    bus.emit(AgentTextDelta, text="py] Our branches are open.")
    await asyncio.sleep(0.3)
    assert all(s.expression == "neutral" for s in states)  # not before its sentence plays
    playout.schedule(turn, AudioChunk(pcm, rate, (), SENTENCE))
    playout.finish_turn(turn)
    await until(lambda: states[-1].expressions[EXPRESSIONS.index("happy")] > 0.8, 3, "the smile")
    assert states[-1].expression == "happy"
    smile = arkit_weights(states[-1])[ARKIT_INDEX["mouthSmileLeft"]]
    assert smile > 0.3
    await until(lambda: states[-1].expressions[EXPRESSIONS.index("happy")] < 0.05, 10, "back to neutral")
    await tl.stop()
    await bus.close()


def test_emotion_tag_scanner_and_strip() -> None:
    from fay_core.avatar.emotion import TagScanner, strip_tags

    sc = TagScanner()
    assert sc.feed("Sure [") == [] and sc.feed("SAD] no [1] cite [thinking]") == ["sad", "thinking"]
    assert strip_tags("[happy] Of course! See [1].") == "Of course! See [1]."


def test_idle_life_blinks_breathes_and_moves() -> None:
    bus = Bus("s-idle")
    tl = AnimationTimeline(bus, seed=5)
    states = [tl.state_at(i * 0.02) for i in range(1500)]  # 30 s of frames
    blink = np.array([s.blink_left for s in states])
    blinks = np.count_nonzero(np.diff((blink > 0.9).astype(int)) == 1)
    assert 4 <= blinks <= 16
    yaw = np.array([s.head_yaw for s in states])
    assert 0.5 < yaw.max() - yaw.min() < 12 and np.abs(np.diff(yaw)).max() < 0.5  # small and smooth
    breath = np.array([s.breath for s in states])
    assert breath.max() > 0.9 and breath.min() < 0.1
    assert all(s.mouth_open == 0 and not s.speaking for s in states)
    again = AnimationTimeline(Bus("other"), seed=5)
    assert [again.state_at(i * 0.02).blink_left for i in range(500)] == list(blink[:500])  # deterministic


# --- renderers on real sessions ---------------------------------------------------------------------------------


def persona_yaml(renderer: str, options: str = "{}") -> str:
    return f"name: Ava\nlanguage: en\navatar:\n  renderer: {renderer}\n  options: {options}\ngreeting: Hi\n"


@pytest.fixture
async def avatar_fay(tmp_path: Path) -> Any:
    personas = tmp_path / "personas"
    personas.mkdir()
    for name, r, opts in [("a3d", "params3d", "{}"), ("al2d", "live2d", "{fps: 25}"), ("av2d", "video2d", "{}"),
                          ("bad", "hologram", "{}"), ("badfps", "video2d", "{fps: 30}")]:
        (personas / f"{name}.yaml").write_text(persona_yaml(r, opts))
    async with Fay(test_settings(tmp_path / "data", personas_dir=personas, default_persona="a3d")) as fay:
        yield fay


def test_renderers_are_plugins(avatar_fay: Fay) -> None:
    assert {"params3d", "live2d", "video2d"} <= set(avatar_fay.plugins.names("renderer"))
    for name in ("params3d", "live2d", "video2d"):
        r = avatar_fay.plugins.engine("renderer", name)
        assert isinstance(r, AvatarRenderer) and r.info.name == name
    provides = {p for i in avatar_fay.plugins.infos for p in i.provides}
    assert {"renderer:params3d", "renderer:live2d", "renderer:video2d"} <= provides


async def test_data_renderers_publish_binary_frames(avatar_fay: Fay) -> None:
    for persona, count, fps in (("a3d", 55, 50), ("al2d", 19, 25)):
        session = await avatar_fay.create_session(persona)
        stream = session.avatar
        assert isinstance(stream, AvatarStream) and stream.video_track is None
        frames: list[bytes] = []
        stream.add_listener(lambda payload, pts, turn, f=frames: f.append(payload))
        await until(lambda f=frames: len(f) > 20, 5, "avatar frames")  # the timeline's own clock (no voice yet)
        header = decode(stream.header())
        assert len(header.channels) == count and header.fps == fps
        decoded = [decode(f, header) for f in frames if f[0] == 2]
        pts = np.array([d.pts for d in decoded])
        assert np.all(np.diff(pts) > 0) and abs(np.median(np.diff(pts)) - 1 / fps) < 0.002
        assert any(f[0] == 1 for f in frames)  # the header is (re)sent in the stream
        names = [c.name for c in header.channels]
        if persona == "a3d":
            assert names[:52] == list(ARKIT_52) and names[52:] == ["headPitch", "headYaw", "headRoll"]
        else:
            assert {"ParamMouthOpenY", "ParamMouthForm", "ParamEyeLOpen", "ParamAngleX"} <= set(names)
        await avatar_fay.close_session(session.id)
        assert session.timeline is not None and session.timeline._stopped


async def test_video_renderer_track_draws_the_labelled_portrait(avatar_fay: Fay) -> None:
    session = await avatar_fay.create_session("av2d")
    track = session.avatar.video_track
    assert track.kind == "video"
    frames = [await asyncio.wait_for(track.recv(), 2) for _ in range(6)]
    rgb = frames[-1].to_ndarray(format="rgb24")
    assert rgb.shape == (480, 384, 3)
    steps = np.diff([f.pts for f in frames])
    assert np.all(steps > 0) and abs(np.median(steps) - 90000 / 25) <= 2  # 25 fps on the 90 kHz clock
    # the "AI-GENERATED" label: white text on a dark box in the top-left corner
    box = rgb[8:40, 8:170]
    assert (box.min(axis=2) > 240).sum() > 200 and (box.max(axis=2) < 90).sum() > 1000
    await avatar_fay.close_session(session.id)
    assert track.readyState == "ended"


async def test_bad_renderer_choices_fail_clearly(avatar_fay: Fay) -> None:
    # a persona naming a renderer nobody installed is a configuration error: said at once, not a silent blank face
    with pytest.raises(PluginError, match=r"no renderer engine named 'hologram'.*live2d.*params3d.*video2d"):
        await avatar_fay.create_session("bad")
    with pytest.raises(PluginError, match="fps must be 10, 25 or 50"):
        await avatar_fay.create_session("badfps")
    assert avatar_fay.sessions == {}  # the failed sessions were cleaned up
    session = await avatar_fay.create_session("a3d")
    assert session.avatar is not None and (await session.answer("hello")).text


async def test_a_failing_renderer_never_breaks_the_audio(speech: tuple[bytes, int]) -> None:
    bus = Bus("s-fail")
    playout = Playout(bus)
    rec = Recorder()
    tl = AnimationTimeline(bus, seed=6)
    tl.start()
    tl.follow(playout)
    playout.add_listener(rec)
    errors: list[ErrorRaised] = []
    bus.subscribe(errors.append, ErrorRaised, name="test.errors", drop_stale=False)
    good: list[AvatarState] = []

    def broken(state: AvatarState) -> None:
        raise RuntimeError("renderer bug")

    tl.add_listener(broken)
    tl.add_listener(good.append)
    playout.start()
    await until(lambda: len(rec.frames) > 25, 3, "audio frames")
    await tl.stop()
    await bus.close()
    assert len(errors) == 1 and "renderer bug" in errors[0].message  # reported once, not 50 times a second
    assert len(good) >= len(rec.frames) - 2
