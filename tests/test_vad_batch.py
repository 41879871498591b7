"""Batched VAD across sessions (real Silero): the same scores and speech events as one call per session, each
session its own turns with many at once, and a failing or stuck batcher falls back instead of going deaf."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from fay_core.app import Fay
from fay_core.events import AgentTurnFinished, TranscriptFinal
from fay_core.persona import InterruptionConfig, VoiceConfig
from fay_core.testing import FakeLLM, Recorder, Reply
from fay_core.voice import vad_batch
from fay_core.voice.audio import load_audio, silence, stream_pcm
from fay_core.voice.vad import Segmenter, SegmenterConfig, VADEvent
from fay_core.voice.vad_batch import Listener, VADBatcher
from fay_silero import SileroStream, SileroVAD
from fay_silero.batch import batched_model
from tests.test_voice_pipeline import voice_settings  # noqa: F401 (a fixture)

RATE = 16000
CFG = SegmenterConfig(min_silence_ms=300)
EN = ["0870", "0880", "0890", "0920", "0930"]


@pytest.fixture(scope="module")
def vad() -> SileroVAD:
    return SileroVAD()


@pytest.fixture(scope="module")
def streams_audio(shared_data: Path) -> list[bytes]:
    """Every shared speech clip, each as one microphone stream with silences around it (two clips in some)."""
    en = [load_audio(shared_data / "speech_en" / f"sense_and_sensibility_01_austen_64kb-{n}.wav") for n in EN]
    others = [load_audio(shared_data / p) for p in ("speech_en/english.wav", "speech_en/jfk.flac",
                                                     "speech_zh/BAC009S0764W0121.wav", "speech_zh/chinese.flac")]
    clips = en + others
    out = []
    for i, clip in enumerate(clips):
        pcm = silence(100 + 70 * i) + clip + silence(800)
        if i % 3 == 0:  # a second utterance after a pause
            pcm += clips[(i + 1) % len(clips)] + silence(900)
        out.append(pcm)
    return out


@pytest.fixture(autouse=True)
def _fresh_batchers() -> None:
    vad_batch._failed_at.clear()  # a failure in one test must not keep the next from batching


def per_session(vad: SileroVAD, pcm: bytes, frame: int = 640) -> list[VADEvent]:
    """The events of one session scoring its own windows (the reference)."""
    seg = Segmenter(vad.create_stream(), CFG)
    events: list[VADEvent] = []
    for i in range(0, len(pcm), frame):
        events += seg.feed(pcm[i : i + frame], 100.0 + (i + frame) / 2 / RATE)
    return events


async def batched(engine: object, audio: list[bytes], *, frame: int = 640, wait_ms: float = 5.0,
                  stuck_s: float | None = None) -> tuple[list[list[VADEvent]], VADBatcher, list[Listener]]:
    """Every stream of ``audio`` fed at once, frame by frame, through one batcher; the events of each."""
    batcher = VADBatcher.shared(engine, wait_ms=wait_ms)
    assert batcher is not None
    if stuck_s is not None:
        batcher.stuck_s = stuck_s
    got: list[list[VADEvent]] = [[] for _ in audio]
    listeners = [Listener(Segmenter(engine.create_stream(), CFG), got[i].extend, batcher, f"s{i}")  # type: ignore[attr-defined]
                 for i in range(len(audio))]
    longest = max(len(p) for p in audio)
    for k, i in enumerate(range(0, longest, frame)):
        for lis, pcm in zip(listeners, audio, strict=True):
            if i < len(pcm):
                lis.feed(pcm[i : i + frame], 100.0 + (i + frame) / 2 / RATE)
        if k % 4 == 0:
            await asyncio.sleep(0.001)  # rounds run while frames keep coming (some sessions get several windows)
    for _ in range(3000):
        if not any(lis.pending for lis in listeners):
            break
        await asyncio.sleep(0.005)
    assert not any(lis.pending for lis in listeners), "windows left unscored"
    return got, batcher, listeners


def test_batched_scores_are_the_per_stream_ones(vad: SileroVAD, streams_audio: list[bytes]) -> None:
    assert vad.batches()
    alone = [vad.create_stream() for _ in streams_audio]
    together = [vad.create_stream() for _ in streams_audio]
    n = min(len(p) for p in streams_audio) // 1024
    for k in range(n):
        frames = [p[k * 1024 : (k + 1) * 1024] for p in streams_audio]
        want = [s.probability(f) for s, f in zip(alone, frames, strict=True)]
        got = vad.probabilities(together, frames)
        assert got == pytest.approx(want, abs=1e-6), k
    # a stream can go on alone after batched calls (the fallback path): same state
    tail = streams_audio[0][n * 1024 : (n + 1) * 1024]
    assert together[0].probability(tail) == pytest.approx(alone[0].probability(tail), abs=1e-6)


def test_a_model_of_another_graph_is_not_batched(vad: SileroVAD, tmp_path: Path) -> None:
    model = vad.model_path.read_bytes()
    assert batched_model(model) is not None
    assert batched_model(batched_model(model) or b"") is None  # already batched: not the graph it knows
    assert batched_model(b"not a model") is None
    other = tmp_path / "other.onnx"
    other.write_bytes(model.replace(b"/Transpose", b"/Transposf"))
    assert not SileroVAD(other).batches()


async def test_batched_events_are_the_per_session_ones(vad: SileroVAD, streams_audio: list[bytes]) -> None:
    want = [per_session(vad, pcm) for pcm in streams_audio]
    got, batcher, listeners = await batched(vad, streams_audio)
    assert batcher.largest >= 4 and batcher.calls > batcher.rounds, "the sessions' windows were not batched"
    for i, (w, g) in enumerate(zip(want, got, strict=True)):
        assert sum(type(e).__name__ == "SpeechEnd" for e in w) >= 1
        assert g == w, f"stream {i}: batched events differ"  # same kinds, times, pauses, audio
    for lis in listeners:
        lis.close()
    assert batcher.listeners == 0 and not vad_batch._shared, "the batcher outlived its sessions"
    assert await _thread_ends(), "the batcher's worker thread outlived its sessions"


async def _thread_ends() -> bool:
    for _ in range(200):
        if not any(t.name.startswith("fay-vad-batch") for t in threading.enumerate()):
            return True
        await asyncio.sleep(0.01)
    return False


class FailingSilero(SileroVAD):
    """The real engine, whose batched calls raise after ``ok`` of them (or hang, with ``hang``)."""

    def __init__(self, ok: int, hang: threading.Event | None = None) -> None:
        super().__init__()
        self.ok = ok
        self.hang = hang

    def probabilities(self, streams: Sequence[SileroStream], frames: Sequence[bytes]) -> list[float]:
        if self.ok <= 0:
            if self.hang is not None:
                self.hang.wait(10)
            raise RuntimeError("batched VAD broke")
        self.ok -= 1
        return super().probabilities(streams, frames)


async def test_a_failing_batcher_falls_back_to_per_session_scoring(
    vad: SileroVAD, streams_audio: list[bytes], caplog: pytest.LogCaptureFixture,
) -> None:
    audio = streams_audio[:4]
    want = [per_session(vad, pcm) for pcm in audio]
    engine = FailingSilero(ok=40)
    with caplog.at_level(logging.WARNING, logger="fay_core.voice.vad_batch"):
        got, batcher, listeners = await batched(engine, audio)
    assert batcher.failed and "batched VAD broke" in batcher.failed
    assert "score their own windows" in caplog.text
    assert not any(lis.batched for lis in listeners)
    assert got == want  # nothing lost or scored twice: the windows the failed call held were scored alone
    assert VADBatcher.shared(engine) is None  # resting: new sessions score their own windows


async def test_a_stuck_batcher_is_abandoned_and_sessions_keep_listening(
    vad: SileroVAD, streams_audio: list[bytes], caplog: pytest.LogCaptureFixture,
) -> None:
    audio = streams_audio[:3]
    release = threading.Event()
    engine = FailingSilero(ok=10, hang=release)
    try:
        with caplog.at_level(logging.WARNING, logger="fay_core.voice.vad_batch"):
            got, batcher, listeners = await batched(engine, audio, stuck_s=0.3)
    finally:
        release.set()
    assert batcher.failed and "did not answer" in batcher.failed
    assert not any(lis.batched for lis in listeners)
    for events, pcm in zip(got, audio, strict=True):  # a fresh stream took over: the speech is still heard
        want = per_session(vad, pcm)
        ends = [e for e in events if type(e).__name__ == "SpeechEnd"]
        assert len(ends) == sum(type(e).__name__ == "SpeechEnd" for e in want)


@pytest.mark.slow
async def test_many_sessions_at_once_each_get_their_own_turns(
    voice_settings, fake_llm: FakeLLM, shared_data: Path,  # noqa: F811
) -> None:
    """Sessions speaking different clips at the same time through the whole pipeline (batched VAD, whisper):
    each one's transcript is its own clip's words."""
    fake_llm.responder = lambda body: Reply("Sure.")
    voice_settings.voice.asr.partials = False
    voice_settings.voice.turn.engine = "none"
    voice_settings.plugins["whisper"] = {"model": "tiny.en", "download": False}
    refs = {n: (shared_data / "speech_en" / f"sense_and_sensibility_01_austen_64kb-{n}.txt").read_text()
            for n in ("0880", "0930", "0890")}
    async with Fay(voice_settings) as fay:
        sessions = []
        for name in refs:
            session = await fay.create_session("voice_en")
            session.persona = session.persona.model_copy(update={
                "interruption": InterruptionConfig(enabled=False), "voice": VoiceConfig(engine="espeak")})
            voice = await fay.assembly.add_voice(session)
            await voice.warm_up()
            assert voice.listener.batched
            sessions.append((name, session, Recorder(session.bus, TranscriptFinal, AgentTurnFinished)))
        batcher = sessions[0][1].voice.listener.batcher  # type: ignore[union-attr]
        assert batcher is not None and batcher.listeners == len(refs)
        clips = {n: load_audio(shared_data / "speech_en" / f"sense_and_sensibility_01_austen_64kb-{n}.wav")
                 for n in refs}
        await asyncio.gather(*(stream_pcm(s.bus, silence(150 * k) + clips[n] + silence(1200))
                               for k, (n, s, _) in enumerate(sessions)))
        for name, _, rec in sessions:
            await rec.wait(TranscriptFinal, within=60)
            heard = " ".join(e.text for e in rec.of(TranscriptFinal)).lower()
            words = set(re.findall(r"[a-z]+", refs[name]))
            got = set(re.findall(r"[a-z]+", heard))
            assert len(words & got) >= 0.6 * len(words), (name, heard)
            for other in refs:
                if other != name:
                    only_other = set(re.findall(r"[a-z]+", refs[other])) - words
                    assert len(got & only_other) <= 2, (name, "heard", other, heard)
            await rec.wait(AgentTurnFinished, within=60)  # (closing mid-answer leaves litellm's stream unawaited)
        assert batcher.largest >= 2, "the sessions' windows were never scored together"
    assert not vad_batch._shared, "the batcher outlived its sessions"
