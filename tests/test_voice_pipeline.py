"""A full voice turn: a recording goes in as microphone frames, a synthesized answer comes out of the playout clock.

Real Silero VAD, real faster-whisper (packaged base model), real litellm HTTP to the fake LLM, real piper/espeak.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fay_core.app import Fay
from fay_core.events import (
    AvatarStoppedSpeaking,
    ErrorRaised,
    LatencyMeasured,
    SpeechScheduled,
    TranscriptFinal,
    UserStartedSpeaking,
    UserStoppedSpeaking,
)
from fay_core.persona import VoiceConfig
from fay_core.settings import LLMSettings
from fay_core import testing
from fay_core.session import Session
from fay_core.testing import FakeLLM, Reply
from fay_core.voice.audio import load_audio, resample, silence, stream_pcm, voiced_span
from fay_whisper import WhisperASR, WhisperSettings

PERSONAS = {
    "voice_en": """
name: Vera
language: en
voice: {engine: auto, fallback: [piper, espeak]}
system_prompt: You are Vera, a bank teller. Answer briefly.
interruption: {min_speech_ms: 250, false_interruption_ms: 800}
""",
    "voice_zh": """
name: 小薇
language: zh
voice: {engine: auto, fallback: [espeak]}
system_prompt: 你是银行柜员小薇。请简短回答。
interruption: {min_speech_ms: 300, false_interruption_ms: 800}
""",
}


@pytest.fixture
def voice_settings(settings, tmp_path: Path, fake_llm: FakeLLM):  # type: ignore[no-untyped-def]
    """Settings with the fake LLM and personas without a knowledge base (the voice path only)."""
    folder = tmp_path / "personas"
    folder.mkdir()
    for name, text in PERSONAS.items():
        (folder / f"{name}.yaml").write_text(text, encoding="utf-8")
    settings.personas_dir = folder
    settings.llm = LLMSettings(model=fake_llm.model, api_base=fake_llm.url)
    return settings


STAGES = ["vad_end", "asr_final", "llm_first_token", "first_sentence", "tts_first_audio", "first_audio_out"]


class Recorder(testing.Recorder):
    """Everything a session's bus and playout produce."""

    def __init__(self, session: Session) -> None:
        super().__init__(session.bus)
        assert session.voice is not None
        self.frames: list[tuple[bytes, float, int]] = []
        session.voice.playout.add_listener(lambda pcm, pts, turn: self.frames.append((pcm, pts, turn)))

    def audio_out(self, turn: int) -> bytes:
        return b"".join(pcm for pcm, _, t in self.frames if t == turn and any(pcm))


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]", " ", text.lower().replace("-", " ")).split()


async def test_a_voice_turn_from_wav_to_spoken_answer(voice_settings, fake_llm: FakeLLM, shared_data: Path) -> None:
    answer = "Certainly. Our branches open at nine in the morning, Monday to Friday."
    fake_llm.enqueue(Reply(answer))
    async with Fay(voice_settings) as fay:
        session = await fay.create_session("voice_en")
        voice = await fay.assembly.add_voice(session)
        assert await fay.assembly.add_voice(session) is voice and session.voice is voice  # idempotent
        await voice.asr.warm_up()
        rec = Recorder(session)
        clip = load_audio(shared_data / "speech_en" / "sense_and_sensibility_01_austen_64kb-0880.wav")
        await stream_pcm(session.bus, silence(300) + clip + silence(1600))
        final = await rec.wait(TranscriptFinal)
        stopped = await rec.wait(AvatarStoppedSpeaking, within=20)
        assert not stopped.interrupted and stopped.turn_id == 1
        await session.bus.idle()

        assert len(rec.of(UserStartedSpeaking)) == 1 and len(rec.of(UserStoppedSpeaking)) == 1
        ref = words("he was not an ill disposed young man")
        hyp = words(final.text)
        assert hyp[:4] == ref[:4] and hyp[-2:] == ref[-2:] and abs(len(hyp) - len(ref)) <= 1, final.text
        assert fake_llm.requests[0]["messages"][-1]["content"] == final.text
        scheduled = rec.of(SpeechScheduled)
        # the session's first turn speaks the disclosure first: audio without words (they are not the answer's)
        disclosure = [s for s in scheduled if not s.text]
        assert disclosure and scheduled[: len(disclosure)] == disclosure and session.disclosure.spoken
        synth = scheduled[len(disclosure):]
        assert [s.text for s in synth] == ["Certainly.", "Our branches open at nine in the morning, Monday to Friday."]
        assert all(s.sample_rate == 48000 and s.words for s in synth) and synth[1].pts > synth[0].pts
        # the audio that left the playout clock says the disclosure, then the answer
        out = rec.audio_out(1)
        assert abs(len(out) - sum(len(s.pcm) for s in scheduled)) <= 1920 * 2
        heard = await WhisperASR(WhisperSettings(download=False)).transcribe(resample(out, 48000, 16000), 16000,
                                                                              language="en")
        said = words(heard.text)
        # ("branches open" is also heard as "branch is open" when the playout's timing shifts the seam)
        branch = next((i for i, w in enumerate(said) if w.startswith("branch")), None)
        assert branch is not None and {"open", "morning", "friday"} <= set(said), heard.text
        assert "person" in said and said.index("person") < branch, heard.text
        # latency marks, from the end of speech, in pipeline order
        marks = {e.stage: e.ms for e in rec.of(LatencyMeasured) if e.since == "speech_end"}
        assert list(marks) == STAGES or sorted(marks) == sorted(STAGES), marks
        values = [marks[s] for s in STAGES]
        assert values == sorted(values) and values[0] > 0 and values[-1] < 60_000, marks
        assert voice.latency[1] == marks
        assert [(m.role, m.interrupted) for m in session.history.messages] == [("user", False), ("assistant", False)]
        assert session.history.messages[1].content == answer


async def test_mandarin_voice_turn(voice_settings, fake_llm: FakeLLM, shared_data: Path) -> None:
    fake_llm.enqueue(Reply("您好，我们早上九点开门。"))
    async with Fay(voice_settings) as fay:
        session = await fay.create_session("voice_zh")
        await fay.assembly.add_voice(session)
        rec = Recorder(session)
        clip = load_audio(shared_data / "speech_zh" / "BAC009S0764W0121.wav")
        await stream_pcm(session.bus, silence(300) + clip + silence(1600))
        final = await rec.wait(TranscriptFinal)
        await rec.wait(AvatarStoppedSpeaking, within=20)
        assert "交易" in final.text and "情况" in final.text, final.text
        # and the disclosure; one chunk per sentence or per clause (gcin), as the engine cuts it
        assert "".join(s.text for s in rec.of(SpeechScheduled) if s.text) == "您好，我们早上九点开门。"
        assert set(session.voice.speaker.used) == set((await session.voice.speaker.chain())[:1])  # gcin, kokoro, espeak
        assert len(rec.audio_out(1)) > 48000 * 2  # more than a second of speech went out


async def test_tts_failure_is_reported_and_the_session_goes_on(voice_settings) -> None:
    async with Fay(voice_settings) as fay:
        session = await fay.create_session("voice_en")
        session.persona = session.persona.model_copy(update={"voice": VoiceConfig(engine="missing")})
        await fay.assembly.add_voice(session)
        rec = Recorder(session)
        first = await session.answer("Hello?")
        await rec.wait(ErrorRaised, lambda e: e.source == "voice.tts")
        assert first.text  # answered (in text) even though no voice could speak it
        assert {e.source for e in rec.of(ErrorRaised)} >= {"tts.missing", "voice.tts"}
        second = await session.answer("Still there?")  # the session is alive
        assert second.text and second.turn_id == 2 and not session.closed


async def test_sessions_share_engines_and_close_cleanly(voice_settings) -> None:
    async with Fay(voice_settings) as fay:
        a = await fay.create_session("voice_en")
        b = await fay.create_session("voice_zh")
        va, vb = await fay.assembly.add_voice(a), await fay.assembly.add_voice(b)
        assert va.asr is vb.asr and va.vad is vb.vad and va.playout is not vb.playout
        assert va.segmenter.stream is not vb.segmenter.stream
        await fay.close_session(a.id)
        assert a.bus.tasks == 0 and b.bus.tasks > 0 and not b.closed


HOURS = ("Harbor Bank branches are open Monday to Friday from 9:00 to 17:00 and Saturday from 9:00 to 13:00. "
         "They are closed on Sundays.")


async def test_a_long_first_sentence_starts_speaking_after_its_first_phrase(voice_settings, fake_llm: FakeLLM) -> None:
    fake_llm.enqueue(Reply(HOURS))
    async with Fay(voice_settings) as fay:
        session = await fay.create_session("voice_en")
        session.persona = session.persona.model_copy(update={"voice": VoiceConfig(engine="piper")})
        voice = await fay.assembly.add_voice(session)
        rec = Recorder(session)
        heard: list[str] = []
        real = voice.speaker.speak

        def speak(text: str, turn_id: int, *, continues: bool = False):  # type: ignore[no-untyped-def]
            heard.append(f"{text}{' …' if continues else ''}")
            return real(text, turn_id, continues=continues)

        voice.speaker.speak = speak  # type: ignore[method-assign]
        await session.answer("When are you open?")
        await rec.wait(SpeechScheduled, lambda e: e.text.endswith("Sundays."), within=30)  # (not played out)
        pieces = [s for s in rec.of(SpeechScheduled) if s.text]
        # the first piece is the first phrase, told that its sentence goes on; captions keep the written form
        assert [s.text for s in pieces] == ["Harbor Bank branches are open Monday to Friday from 9:00 to 17:00",
                                            "and Saturday from 9:00 to 13:00.", "They are closed on Sundays."]
        assert heard[-3:] == ["Harbor Bank branches are open Monday to Friday from 9:00 to 17:00 …",
                              "and Saturday from 9:00 to 13:00.", "They are closed on Sundays."]
        first, second = pieces[0], pieces[1]
        rate = first.sample_rate
        # the seam is a pause inside a sentence: the first piece's trailing silence is cut, the pieces play back
        # to back (the second was ready before the first had played)
        _, end = voiced_span(first.pcm, rate)
        trailing_ms = (len(first.pcm) // 2 - end) / rate * 1000
        assert trailing_ms <= voice_settings.voice.tts.seam_ms / 3 + 10, trailing_ms
        assert abs(second.pts - (first.pts + len(first.pcm) / 2 / rate)) < 1e-6
        lead, _ = voiced_span(second.pcm, rate)
        assert lead / rate * 1000 <= 20 + 10
        # the words are the written ones (the voice read "nine a.m. to five p.m.")
        assert [w.word for w in first.words][-4:] == ["from", "9:00", "to", "17:00"]
        assert session.history.messages[-1].content == HOURS


async def test_the_first_piece_can_be_a_whole_sentence(voice_settings, fake_llm: FakeLLM) -> None:
    voice_settings.voice.tts.first_piece = "sentence"
    fake_llm.enqueue(Reply(HOURS))
    async with Fay(voice_settings) as fay:
        session = await fay.create_session("voice_en")
        session.persona = session.persona.model_copy(update={"voice": VoiceConfig(engine="piper")})
        await fay.assembly.add_voice(session)
        rec = Recorder(session)
        await session.answer("When are you open?")
        await rec.wait(SpeechScheduled, lambda e: e.text.endswith("Sundays."), within=30)
        assert [s.text for s in rec.of(SpeechScheduled) if s.text] == [
            "Harbor Bank branches are open Monday to Friday from 9:00 to 17:00 and Saturday from 9:00 to 13:00.",
            "They are closed on Sundays."]
