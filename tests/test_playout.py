"""The playout clock: real-time 20 ms frames, events as audio leaves, pause/resume, interruption."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from fay_core.bus import Bus
from fay_core.engines import AudioChunk
from fay_core.events import (
    AvatarStartedSpeaking,
    AvatarStoppedSpeaking,
    Interrupted,
    PlayoutResumed,
    SpeechScheduled,
    WordPlayed,
    WordTiming,
)
from fay_core.testing import Recorder
from fay_core.voice.playout import Playout


def tone(ms: int, rate: int = 24000) -> bytes:
    t = np.arange(rate * ms // 1000) / rate
    return (np.sin(2 * np.pi * 220 * t) * 8000).astype(np.int16).tobytes()


def chunk(text: str, ms: int) -> AudioChunk:
    words = text.split()
    step = ms / len(words)
    timings = tuple(WordTiming(w, i * step, (i + 1) * step) for i, w in enumerate(words))
    return AudioChunk(tone(ms), 24000, timings, text)


class Rig:
    def __init__(self) -> None:
        self.bus = Bus("s1")
        self.playout = Playout(self.bus)
        self.frames: list[tuple[bytes, float, int, float]] = []
        self.playout.add_listener(lambda pcm, pts, turn: self.frames.append((pcm, pts, turn, time.monotonic())))
        self.recorder = Recorder(self.bus)
        self.events = self.recorder.events
        self.of = self.recorder.of

    def voiced(self) -> list[tuple[bytes, float, int, float]]:
        return [f for f in self.frames if any(f[0])]


async def test_frames_leave_in_real_time_with_silence_when_idle() -> None:
    rig = Rig()
    rig.playout.start()
    await asyncio.sleep(1.0)
    await rig.bus.close()
    n = len(rig.frames)
    assert 45 <= n <= 52, n
    assert all(len(pcm) == 48000 * 2 // 50 and not any(pcm) and turn == 0 for pcm, _, turn, _ in rig.frames)
    assert [round(p, 2) for _, p, _, _ in rig.frames] == [round(i * 0.02, 2) for i in range(n)]
    # drift-corrected: frame k leaves about k * 20 ms after the first
    t0 = rig.frames[0][3]
    assert max(abs(t - t0 - i * 0.02) for i, (_, _, _, t) in enumerate(rig.frames)) < 0.1


async def test_a_turn_plays_with_word_events_and_start_stop() -> None:
    rig = Rig()
    rig.playout.start()
    await asyncio.sleep(0.05)
    pts = rig.playout.schedule(1, chunk("good morning dear customer", 400))
    rig.playout.schedule(1, chunk("welcome back", 200))
    rig.playout.finish_turn(1)
    await asyncio.sleep(0.9)
    await rig.bus.idle()
    synth = rig.of(SpeechScheduled)
    assert synth[0].pts == pts and abs(synth[1].pts - pts - 0.4) < 1e-6
    assert synth[0].sample_rate == 48000 and len(synth[0].pcm) == 48000 * 2 * 400 // 1000
    voiced = rig.voiced()
    assert voiced[0][1] == pts and all(turn == 1 for _, _, turn, _ in voiced)
    assert 29 <= len(voiced) <= 31  # 600 ms of audio
    words = rig.of(WordPlayed)
    assert [w.word for w in words] == ["good", "morning", "dear", "customer", "welcome", "back"]
    assert all(b.pts > a.pts for a, b in zip(words, words[1:], strict=False))
    assert abs(words[4].pts - (pts + 0.4)) < 0.021
    start, stop = rig.of(AvatarStartedSpeaking), rig.of(AvatarStoppedSpeaking)
    assert len(start) == 1 and len(stop) == 1 and not stop[0].interrupted
    assert rig.playout.played_text(1) == "" and not rig.playout.speaking  # finished turns are forgotten
    await rig.bus.close()


async def test_interrupt_flushes_audio_and_reports_only_played_words() -> None:
    rig = Rig()
    rig.playout.start()
    rig.playout.schedule(3, chunk("one two three four five six seven eight nine ten", 1000))
    rig.playout.schedule(3, chunk("never heard at all", 400))
    await asyncio.sleep(0.45)
    played = rig.playout.interrupt(onset=123.0)
    stopped_at = len(rig.frames)
    await asyncio.sleep(0.2)
    await rig.bus.idle()
    words = played.split()
    assert 3 <= len(words) <= 6 and "one two three four five six seven eight nine ten".startswith(played)
    assert [w.word for w in rig.of(WordPlayed)] == words
    (intr,) = rig.of(Interrupted)
    assert intr.turn_id == 3 and intr.played_text == played and intr.onset == 123.0
    assert rig.of(AvatarStoppedSpeaking)[-1].interrupted
    assert not any(any(f[0]) for f in rig.frames[stopped_at:])  # silence right after
    assert rig.playout.schedule(3, chunk("late audio", 200)) == -1  # the turn is dead
    await rig.bus.close()


async def test_pause_holds_the_audio_and_resume_continues_where_it_stopped() -> None:
    rig = Rig()
    rig.playout.start()
    rig.playout.schedule(1, chunk("a b c d", 400))
    rig.playout.finish_turn(1)
    await asyncio.sleep(0.15)
    assert rig.playout.pause()
    before = len(rig.voiced())
    await asyncio.sleep(0.3)
    assert len(rig.voiced()) == before and rig.playout.speaking
    rig.playout.resume()
    await asyncio.sleep(0.5)
    await rig.bus.idle()
    assert len(rig.voiced()) == 20  # all 400 ms played, none lost
    (resumed,) = rig.of(PlayoutResumed)
    assert 0.25 <= resumed.shift_s <= 0.4
    assert [w.word for w in rig.of(WordPlayed)] == ["a", "b", "c", "d"]
    await rig.bus.close()
