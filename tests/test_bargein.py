"""Barge-in with the real VAD and ASR: speech over the avatar stops playout and history keeps only the played
words; too few real words resume playout; half duplex ignores the microphone while the avatar talks."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fay_core.app import Fay
from fay_core.events import (
    AvatarStartedSpeaking,
    AvatarStoppedSpeaking,
    Interrupted,
    LatencyMeasured,
    PlayoutPaused,
    PlayoutResumed,
    TranscriptFinal,
    WordPlayed,
)
from fay_core.persona import InterruptionConfig
from fay_core.testing import FakeLLM, Reply
from fay_core.voice.audio import load_audio, silence, stream_pcm
from fay_core.voice.bargein import real_words
from tests.test_voice_pipeline import Recorder, voice_settings  # noqa: F401 (a fixture)

ANSWER = (
    "We have three kinds of savings accounts. The easy saver pays a variable rate and lets you withdraw at any time. "
    "The fixed saver locks your money for a year at a fixed rate. The young saver is for customers under eighteen."
)


async def speaking_session(fay: Fay, interruption: InterruptionConfig):  # type: ignore[no-untyped-def]
    session = await fay.create_session("voice_en")
    session.persona = session.persona.model_copy(update={"interruption": interruption})
    voice = await fay.assembly.add_voice(session)
    await voice.asr.warm_up()
    rec = Recorder(session)
    session.submit("Tell me about your savings accounts.")
    await rec.wait(AvatarStartedSpeaking, within=30)
    await rec.wait(WordPlayed, within=30)  # the session's first turn speaks the disclosure first: then the answer
    await asyncio.sleep(1.2)  # let a few words play
    return session, rec


@pytest.fixture
def llm_settings(voice_settings, fake_llm: FakeLLM):  # type: ignore[no-untyped-def]  # noqa: F811
    fake_llm.enqueue(Reply(ANSWER), Reply("Of course, go ahead."))
    return voice_settings


async def test_speech_over_the_avatar_stops_it_and_history_keeps_the_played_words(
    llm_settings, fake_llm: FakeLLM, shared_data: Path
) -> None:
    async with Fay(llm_settings) as fay:
        session, rec = await speaking_session(fay, InterruptionConfig(min_speech_ms=200, false_interruption_ms=3000))
        speech = load_audio(shared_data / "speech_en" / "jfk.flac")[: 16000 * 3]  # "And so my fellow Americans"
        await stream_pcm(session.bus, speech + silence(1600))
        intr = await rec.wait(Interrupted, within=20)
        final = await rec.wait(TranscriptFinal, within=20)
        await rec.wait(AvatarStoppedSpeaking, lambda e: e.turn_id == 2, within=30)
        await session.bus.idle()

        paused = rec.of(PlayoutPaused)[0]
        # (on a starved CPU the transcript may come after false_interruption_ms: playout resumes, then the final
        # transcript's words interrupt it; either way the words decide)
        assert intr.turn_id == 1 and paused.turn_id == 1
        stop = next(e for e in rec.of(LatencyMeasured) if e.stage == "barge_in_stop")
        assert 200 <= stop.ms < 2000  # min_speech_ms of speech, then at once (generous bound for a busy CI)
        played = intr.played_text
        assert played and ANSWER.startswith(played) and len(played) < len(ANSWER), played
        if not rec.of(PlayoutResumed):
            assert len(played) < len(ANSWER) / 2, played
        assert " ".join(w.word for w in rec.of(WordPlayed) if w.turn_id == 1) == played
        # nothing of turn 1 left the playout clock after the interruption
        cut = next(i for i, e in enumerate(rec.events) if isinstance(e, Interrupted))
        assert not any(isinstance(e, WordPlayed) and e.turn_id == 1 for e in rec.events[cut:])
        assert rec.of(AvatarStoppedSpeaking)[0].interrupted
        # history: the question, only the played words (marked), then the barge-in utterance and its answer
        msgs = [(m.role, m.content, m.interrupted) for m in session.history.messages]
        assert msgs[:2] == [("user", "Tell me about your savings accounts.", False), ("assistant", played, True)]
        assert msgs[2][0] == "user" and msgs[2][1] == final.text and "and so" in final.text.lower()
        sent = fake_llm.requests[1]["messages"]
        assert sent[-2]["content"].startswith(played) and "interrupted" in sent[-2]["content"]


async def test_too_few_real_words_resume_where_it_paused(llm_settings, fake_llm: FakeLLM, shared_data: Path) -> None:
    async with Fay(llm_settings) as fay:
        session, rec = await speaking_session(
            fay, InterruptionConfig(min_speech_ms=200, min_words=5, false_interruption_ms=600)
        )
        await stream_pcm(session.bus, load_audio(shared_data / "speech_en" / "english.wav") + silence(1600))  # 1, 2, 3
        await rec.wait(PlayoutResumed, within=20)
        stopped = await rec.wait(AvatarStoppedSpeaking, within=60)
        await session.bus.idle()
        trace = [(type(e).__name__, e.turn_id, getattr(e, "text", "")) for e in rec.events
                 if type(e).__name__ not in ("AudioReceived", "WordPlayed", "SpeechScheduled")]
        assert not stopped.interrupted and not rec.of(Interrupted) and not rec.of(TranscriptFinal), trace
        assert len(fake_llm.requests) == 1  # the backchannel started no turn
        assert " ".join(w.word for w in rec.of(WordPlayed)) == ANSWER  # every word played, none lost
        assert session.history.messages[-1].content == ANSWER and not session.history.messages[-1].interrupted


async def test_half_duplex_ignores_speech_while_the_avatar_talks(
    llm_settings, fake_llm: FakeLLM, shared_data: Path
) -> None:
    async with Fay(llm_settings) as fay:
        session, rec = await speaking_session(fay, InterruptionConfig(half_duplex=True))
        await stream_pcm(session.bus, load_audio(shared_data / "speech_en" / "jfk.flac")[: 16000 * 2] + silence(1600))
        await asyncio.sleep(0.5)
        assert not rec.of(PlayoutPaused) and not rec.of(Interrupted) and not rec.of(TranscriptFinal)
        assert session.voice.playout.speaking and len(fake_llm.requests) == 1


def test_fillers_are_not_real_words() -> None:
    assert real_words("Mm-hmm.") == 0 and real_words("嗯嗯") == 0 and real_words("uh, um") == 0
    assert real_words("Wait, stop!") == 2 and real_words("等一下") == 3


async def spoken(fay: Fay, text: str) -> bytes:
    """``text`` in the real Piper voice, as 16 kHz microphone audio."""
    from fay_core.voice.audio import resample

    out = b""
    async for chunk in fay.plugins.engine("tts", "piper").synthesize(text):
        out += resample(chunk.pcm, chunk.sample_rate, 16000)
    return out


async def test_with_the_default_settings_a_backchannel_pauses_at_onset_and_playback_resumes(
    llm_settings, fake_llm: FakeLLM
) -> None:
    async with Fay(llm_settings) as fay:
        session, rec = await speaking_session(fay, InterruptionConfig())  # the shipped defaults
        await stream_pcm(session.bus, await spoken(fay, "Okay.") + silence(1600))
        await rec.wait(PlayoutResumed, within=20)
        stopped = await rec.wait(AvatarStoppedSpeaking, within=60)
        await session.bus.idle()
        stop = next(e for e in rec.of(LatencyMeasured) if e.stage == "barge_in_stop")
        assert stop.ms >= InterruptionConfig().min_speech_ms  # paused at the VAD onset of sustained speech
        assert not stopped.interrupted and not rec.of(Interrupted) and not rec.of(TranscriptFinal)
        assert len(fake_llm.requests) == 1
        assert " ".join(w.word for w in rec.of(WordPlayed)) == ANSWER  # every word played, none lost


async def test_an_uninterruptible_passage_plays_through_speech(voice_settings, fake_llm: FakeLLM,  # noqa: F811
                                                               shared_data: Path) -> None:
    terms = "[uninterruptible]" + ANSWER + "[/uninterruptible]"
    fake_llm.enqueue(Reply(terms))
    async with Fay(voice_settings) as fay:
        session, rec = await speaking_session(fay, InterruptionConfig())
        await stream_pcm(session.bus, load_audio(shared_data / "speech_en" / "jfk.flac")[: 16000 * 3] + silence(1600))
        await rec.wait(AvatarStoppedSpeaking, within=60)
        await session.bus.idle()
        assert not rec.of(PlayoutPaused) and not rec.of(Interrupted) and not rec.of(TranscriptFinal)
        assert " ".join(w.word for w in rec.of(WordPlayed)) == ANSWER  # the markers are not spoken


def test_backchannels_are_not_real_words() -> None:
    for text in ("Yeah.", "Right.", "Okay.", "Mm-hm.", "嗯", "对", "好的", "是", "是的", "对对对"):
        assert real_words(text) == 0, text
    assert real_words("Okay, stop.") == 1 and real_words("no") == 1 and real_words("对不起") == 2
