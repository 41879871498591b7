"""Silero VAD (real model): segments match where speech is, pre-roll keeps the first syllable, any frame size."""

from __future__ import annotations

from pathlib import Path

import pytest

from fay_core.voice.audio import load_audio, silence
from fay_core.voice.vad import Segmenter, SegmenterConfig, SpeechEnd, SpeechStart
from fay_silero import SileroVAD

RATE = 16000


@pytest.fixture(scope="module")
def vad() -> SileroVAD:
    return SileroVAD()


def speech_bounds(pcm: bytes, db: float = -15.0) -> tuple[float, float]:
    """Where speech starts and ends by energy: the first and last 60 ms louder than ``db`` below the peak
    (the recordings have room noise and breaths around -25 dB)."""
    import numpy as np

    x = np.frombuffer(pcm, dtype=np.int16).astype(np.float64)
    rms = np.sqrt((x[: len(x) // 320 * 320].reshape(-1, 320) ** 2).mean(axis=1))
    loud = 20 * np.log10(rms / rms.max() + 1e-9) > db
    runs = [i for i in range(len(loud) - 2) if loud[i : i + 3].all()]
    return runs[0] * 0.02, (runs[-1] + 3) * 0.02


def run(vad: SileroVAD, pcm: bytes, frame_ms: float = 20, **cfg) -> list:
    seg = Segmenter(vad.create_stream(), SegmenterConfig(**cfg))
    size = int(RATE * frame_ms / 1000) * 2
    events, sent = [], 0
    for i in range(0, len(pcm), size):
        chunk = pcm[i : i + size]
        sent += len(chunk) // 2
        events += seg.feed(chunk, sent / RATE)  # the "clock" is stream time here
    return events


def test_segments_match_known_speech(vad: SileroVAD, shared_data: Path) -> None:
    clips = [load_audio(shared_data / "speech_en" / f"sense_and_sensibility_01_austen_64kb-{n}.wav")
             for n in ("0880", "0930")]
    clips.append(load_audio(shared_data / "speech_zh" / "BAC009S0764W0121.wav"))
    pcm, truth, t = b"", [], 0.0
    for clip in clips:
        pcm += silence(1200)
        t += 1.2
        start, end = speech_bounds(clip)
        truth.append((t + start, t + end))
        pcm += clip
        t += len(clip) / 2 / RATE
    pcm += silence(1000)
    ends = [e for e in run(vad, pcm, min_silence_ms=600) if isinstance(e, SpeechEnd)]
    assert len(ends) == len(truth), [(e.onset, e.speech_end) for e in ends]
    for e, (t0, t1) in zip(ends, truth, strict=True):
        assert abs(e.onset - t0) < 0.15, (e.onset, t0)
        assert abs(e.speech_end - t1) < 0.3, (e.speech_end, t1)
        # pre-roll: the utterance audio begins before the onset, so no syllable is lost
        assert len(e.pcm) / 2 / RATE > e.speech_end - e.onset + 0.2


def test_silence_and_noise_are_not_speech(vad: SileroVAD) -> None:
    import numpy as np

    noise = (np.random.default_rng(1).normal(0, 300, RATE * 3)).astype(np.int16).tobytes()
    assert run(vad, silence(2000) + noise) == []


def test_frame_size_does_not_matter(vad: SileroVAD, shared_data: Path) -> None:
    pcm = silence(500) + load_audio(shared_data / "speech_en" / "jfk.flac") + silence(800)
    a = [(type(e).__name__, round(getattr(e, "onset", 0), 3)) for e in run(vad, pcm, 20)]
    b = [(type(e).__name__, round(getattr(e, "onset", 0), 3)) for e in run(vad, pcm, 7)]
    assert a == b and any(n == "SpeechStart" for n, _ in a)


def test_pauses_shorter_than_min_silence_do_not_split(vad: SileroVAD, shared_data: Path) -> None:
    pcm = silence(500) + load_audio(shared_data / "speech_en" / "jfk.flac") + silence(1500)
    long_wait = [e for e in run(vad, pcm, min_silence_ms=2000) if isinstance(e, SpeechStart)]
    short_wait = [e for e in run(vad, pcm, min_silence_ms=200) if isinstance(e, SpeechStart)]
    assert len(long_wait) == 1 and len(short_wait) > 1  # JFK pauses between phrases


def test_stream_state_is_per_session(vad: SileroVAD) -> None:
    a, b = vad.create_stream(), vad.create_stream()
    frame = silence(32)
    assert a.probability(frame) == b.probability(frame)
    assert a._session is b._session  # one model for all sessions
