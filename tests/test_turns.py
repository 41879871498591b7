"""The turn gate with the real Smart Turn model, Silero VAD and whisper: a paused utterance is not cut off (the
silence rule alone cuts it), a missing or broken turn model falls back to the silence rule with one warning."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

import fay_smart_turn
from fay_core.app import Fay
from fay_core.events import TranscriptFinal, UserStoppedSpeaking
from fay_core.plugins import Plugins
from fay_core.session import Session
from fay_core.settings import Settings
from fay_core.testing import FakeLLM, Recorder, Reply
from fay_core.voice.audio import load_audio, silence, stream_pcm
from fay_smart_turn import SmartTurn, SmartTurnSettings, find_model
from tests.test_voice_pipeline import voice_settings  # noqa: F401 (a fixture)

# phrase boundaries (seconds into the clip) where a speaker may pause mid-sentence, and the words either side
EN_CLIP = ("speech_en/sense_and_sensibility_01_austen_64kb-0870.wav", 2.75, "dashwood", "prudently")
ZH_CLIP = ("speech_zh/BAC009S0764W0121.wav", 2.0, "甚至", "情况")


@pytest.fixture(scope="module")
def smart_turn_model() -> Path:
    path = find_model(SmartTurnSettings())
    if path is None:
        pytest.fail("the Smart Turn model is not installed here: run `make smart-turn` "
                    "(python -m fay_smart_turn.fetch)")
    return path


def gated_app(settings: Settings, **smart_turn: object) -> Fay:
    """Fay with the smart_turn plugin (registered by hand where the installed entry points predate it)."""
    if smart_turn:
        settings.plugins["smart_turn"] = dict(smart_turn)
    plugins = Plugins(settings).load()
    if "smart_turn" not in {i.name for i in plugins.infos}:
        plugins.register(fay_smart_turn, "smart_turn")
    return Fay(settings, plugins)


def paused(shared: Path, clip: tuple[str, float, str, str], pause_ms: int = 1500) -> bytes:
    pcm = load_audio(shared / clip[0])
    cut = int(clip[1] * 16000) * 2
    return silence(200) + pcm[:cut] + silence(pause_ms) + pcm[cut:] + silence(1500)


async def say(fay: Fay, persona: str, pcm: bytes) -> tuple[Session, Recorder]:
    session = await fay.create_session(persona)
    voice = await fay.assembly.add_voice(session)
    await voice.warm_up()
    rec = Recorder(session.bus)
    await stream_pcm(session.bus, pcm)
    await rec.wait(TranscriptFinal, within=30)
    await asyncio.sleep(0.3)
    return session, rec


@pytest.mark.slow
@pytest.mark.parametrize(("persona", "clip"), [("voice_en", EN_CLIP), ("voice_zh", ZH_CLIP)], ids=["en", "zh"])
async def test_a_paused_utterance_is_one_turn_with_the_gate_and_two_without(
    voice_settings, fake_llm: FakeLLM, shared_data: Path, smart_turn_model: Path, persona: str,  # noqa: F811
    clip: tuple[str, float, str, str],
) -> None:
    fake_llm.enqueue(*[Reply("Sure.")] * 4)
    audio = paused(shared_data, clip)
    # the silence rule at 1200 ms (not 300) still cuts a 1500 ms pause, and gives the model time on a loaded CI
    # machine (seconds a call were seen here at a load of 12 on 2 cores): a verdict later than the silence rule
    # is ignored (fail-open), which would make this test flaky. bench/voice.py measures the shipped defaults.
    voice_settings.voice.vad.min_silence_ms = 1200
    voice_settings.voice.turn.max_pause_ms = 2500
    voice_settings.voice.asr.partials = False
    async with gated_app(voice_settings) as fay:
        session, rec = await say(fay, persona, audio)
        gate = session.voice.turn_gate  # type: ignore[union-attr]
        assert isinstance(gate.detector, SmartTurn)
        finals = rec.of(TranscriptFinal)
        assert len(rec.of(UserStoppedSpeaking)) == 1 and len(finals) == 1, ([f.text for f in finals], gate.verdicts)
        text = finals[0].text.lower()
        assert clip[2] in text and clip[3] in text, text
        assert any(not v.complete and v.applied for v in gate.verdicts), gate.verdicts  # the model held the pause
    voice_settings.voice.turn.engine = "none"  # the silence rule alone cuts the same utterance in two
    async with gated_app(voice_settings) as fay:
        session, rec = await say(fay, persona, audio)
        await rec.wait(UserStoppedSpeaking, lambda e: len(rec.of(UserStoppedSpeaking)) >= 2, within=20)
        assert session.voice.turn_gate.detector is None  # type: ignore[union-attr]


@pytest.mark.slow
async def test_a_missing_turn_model_falls_back_to_the_silence_rule_with_a_warning(
    voice_settings, fake_llm: FakeLLM, shared_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,  # noqa: F811
) -> None:
    fake_llm.enqueue(*[Reply("Sure.")] * 4)
    caplog.set_level(logging.WARNING, logger="fay_core.voice.turns")
    async with gated_app(voice_settings, model_path=str(tmp_path / "missing.onnx")) as fay:
        session, rec = await say(fay, "voice_en", paused(shared_data, EN_CLIP))
        await rec.wait(UserStoppedSpeaking, lambda e: len(rec.of(UserStoppedSpeaking)) >= 2, within=20)
        assert session.voice.turn_gate.detector is None  # type: ignore[union-attr]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) <= 1 and all("missing.onnx" in w and "silence rule" in w for w in warnings), warnings
    # (one per process: an earlier test in this process may already have given it)


@pytest.mark.slow
async def test_a_broken_turn_model_falls_back_to_the_silence_rule_with_one_warning(
    voice_settings, fake_llm: FakeLLM, shared_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,  # noqa: F811
) -> None:
    fake_llm.enqueue(*[Reply("Sure.")] * 4)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not an ONNX model" * 100)
    caplog.set_level(logging.WARNING, logger="fay_core.voice.turns")
    async with gated_app(voice_settings, model_path=str(broken)) as fay:
        audio = paused(shared_data, EN_CLIP)
        session, rec = await say(fay, "voice_en", audio[: len(audio) // 2] + silence(400) + audio[len(audio) // 2 :])
        await rec.wait(UserStoppedSpeaking, lambda e: len(rec.of(UserStoppedSpeaking)) >= 2, within=20)
        gate = session.voice.turn_gate  # type: ignore[union-attr]
        assert isinstance(gate.detector, SmartTurn) and gate.fallbacks >= 2 and not gate.verdicts
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "could not load" in warnings[0] and "silence rule" in warnings[0], warnings


def test_thresholds_are_per_language_and_validated() -> None:
    from fay_core.errors import ConfigError
    from fay_core.settings import load_settings

    turn = load_settings(voice={"turn": {"thresholds": {"en": 0.6, "*": 0.4}}}).voice.turn
    assert turn.threshold("en") == 0.6 and turn.threshold("zh") == 0.4 and turn.threshold(None) == 0.4
    with pytest.raises(ConfigError, match="voice.turn.thresholds"):
        load_settings(voice={"turn": {"thresholds": {"zh": 1.5}}})
