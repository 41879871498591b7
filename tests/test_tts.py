"""TTS engines and the per-session speaker: piper (English), espeak-ng (Mandarin), edge-tts failing fast offline,
fallback along the persona's chain, ``auto`` from the engines' metadata, word timings."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from fay_core import hookimpl
from fay_core.app import Fay
from fay_core.bus import Bus
from fay_core.engines import AudioChunk, ChecksReachability, ChecksVoice, SupportsWarmUp
from fay_core.errors import EngineError, EngineUnavailable
from fay_core.events import ErrorRaised
from fay_core.hookspecs import RegisterEngine
from fay_core.persona import Persona, VoiceConfig
from fay_core.plugins import Plugins
from fay_core.settings import VoiceSettings
from fay_whisper import WhisperASR, WhisperSettings
from fay_core.voice.audio import resample
from fay_core.voice.tts import Speaker, estimate_words, split_words
from fay_edge import EdgeSettings, EdgeTTS
from fay_espeak import EspeakTTS
from fay_piper import PiperTTS
from tests.test_voice_pipeline import voice_settings  # noqa: F401 (a fixture)


@pytest.fixture
async def voice_fay(voice_settings):  # type: ignore[no-untyped-def]  # noqa: F811
    async with Fay(voice_settings) as app:
        yield app


async def collect(gen) -> list[AudioChunk]:
    return [c async for c in gen]


async def test_piper_speaks_english_that_whisper_understands() -> None:
    text = "Your savings account pays two percent a year."
    (chunk,) = await collect(PiperTTS().synthesize(text))
    assert chunk.sample_rate == 22050 and 1.5 < len(chunk.pcm) / 2 / chunk.sample_rate < 6
    heard = await WhisperASR(WhisperSettings(download=False)).transcribe(
        resample(chunk.pcm, chunk.sample_rate, 16000), 16000, language="en"
    )
    heard_text = heard.text.lower()
    assert "savings account" in heard_text and ("2%" in heard_text or "two percent" in heard_text), heard.text


async def test_espeak_speaks_mandarin_with_estimated_word_timings() -> None:
    text = "您好，请问有什么可以帮您？"
    (chunk,) = await collect(EspeakTTS().synthesize(text, language="zh"))
    assert chunk.sample_rate == 22050 and len(chunk.pcm) / 2 / chunk.sample_rate > 1.0
    words = estimate_words(text, chunk.pcm, chunk.sample_rate)
    assert [w.word for w in words] == split_words(text) and len(words) == 11  # one per character
    assert all(a.end_ms <= b.start_ms + 1e-6 for a, b in zip(words, words[1:], strict=False))
    assert words[-1].end_ms <= len(chunk.pcm) / 2 / chunk.sample_rate * 1000


async def test_espeak_reports_a_bad_voice() -> None:
    with pytest.raises(EngineError, match="espeak-ng failed"):
        await collect(EspeakTTS().synthesize("hello", voice="xx-nonexistent"))


async def test_edge_fails_fast_with_a_clear_message_when_unreachable() -> None:
    # an HTTP proxy on a loopback port nobody listens on: the connection is refused at once, no traffic leaves
    engine = EdgeTTS(EdgeSettings(proxy="http://127.0.0.1:9", connect_timeout_s=3))
    t0 = time.monotonic()
    with pytest.raises(EngineError, match="cannot reach the Edge speech service.*offline voice"):
        await collect(engine.synthesize("Hello"))
    assert time.monotonic() - t0 < 2.0


async def test_speaker_falls_back_and_reports_the_failure(voice_fay: Fay) -> None:
    fay = voice_fay
    fay.settings.plugins["edge"] = {"proxy": "http://127.0.0.1:9"}
    session = await fay.create_session("voice_en")
    session.persona = session.persona.model_copy(
        update={"voice": VoiceConfig(engine="edge", name="en-US-AriaNeural", fallback=["piper", "espeak"])}
    )
    errors: list[ErrorRaised] = []
    session.bus.subscribe(errors.append, ErrorRaised, drop_stale=False)
    speaker = Speaker(session.bus, session.persona, fay.settings.voice, fay.plugins)
    chunks = await collect(speaker.speak("Welcome to Harbor Bank.", turn_id=1))
    assert chunks and chunks[0].words and speaker.used == ["piper"]
    await session.bus.idle()
    assert [e.source for e in errors] == ["tts.edge"] and "offline" in errors[0].message
    # the failed engine rests: the next sentence goes straight to the fallback
    await collect(speaker.speak("Goodbye.", turn_id=1))
    await session.bus.idle()
    assert speaker.used == ["piper", "piper"] and len(errors) == 1


def can_run(fay: Fay, engine: str) -> bool:
    """Whether a registered engine's packages and files are there (gcin needs the Debian package gcin-voice)."""
    try:
        fay.plugins.engine("tts", engine)
    except EngineUnavailable:
        return False
    return True


async def test_auto_picks_an_offline_voice_for_the_language(voice_fay: Fay) -> None:
    fay = voice_fay
    en = await fay.create_session("voice_en")
    zh = await fay.create_session("voice_zh")
    assert (await Speaker(en.bus, en.persona, fay.settings.voice, fay.plugins).chain())[0] == "piper"
    zh_speaker = Speaker(zh.bus, zh.persona, fay.settings.voice, fay.plugins)
    names = fay.plugins.names("tts")  # the Mandarin voices this checkout's install registers
    offline_zh = [n for n in ("gcin", "kokoro") if n in names and can_run(fay, n)] + ["espeak"]
    assert await zh_speaker.chain() == offline_zh
    chunks = await collect(zh_speaker.speak("您好。", turn_id=1))
    assert chunks[0].pcm and zh_speaker.used == offline_zh[:1]


async def test_every_engine_failing_is_an_error_not_a_crash(voice_fay: Fay) -> None:
    fay = voice_fay
    session = await fay.create_session("voice_en")
    session.persona = session.persona.model_copy(update={"voice": VoiceConfig(engine="nope", fallback=["nada"])})
    with pytest.raises(EngineError, match="every TTS engine failed.*no tts engine named 'nope'"):
        await collect(Speaker(session.bus, session.persona, fay.settings.voice, fay.plugins).speak("Hi.", turn_id=1))


class Voice:
    """A TTS engine that speaks a constant tone."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def synthesize(
        self, text: str, *, voice: str | None = None, language: str = "en", rate: float = 1.0
    ) -> AsyncIterator[AudioChunk]:
        yield AudioChunk(b"\x10\x00" * 1600, 16000, (), text)


class OnlineVoice(Voice):
    def __init__(self, name: str, *, reachable: bool) -> None:
        super().__init__(name)
        self.online = reachable

    async def reachable(self) -> bool:
        return self.online


class Voices:
    """TTS engines known only by their metadata (none of Fay's names)."""

    def __init__(self, reachable: bool) -> None:
        self.cloud = OnlineVoice("cloud", reachable=reachable)

    @hookimpl
    def register_tts_engines(self, register: RegisterEngine) -> None:
        register("broken", self._unavailable, priority=300)
        register("cloud", lambda: self.cloud, online=True, priority=200)
        register("mandarin", lambda: Voice("mandarin"), languages=("zh",), priority=150)
        register("english", lambda: Voice("english"), languages=("en",), priority=100)
        register("robot", lambda: Voice("robot"))

    @staticmethod
    def _unavailable() -> Voice:
        raise EngineUnavailable("not installed")


def speaker_for(language: str, *, reachable: bool, online: str = "auto") -> Speaker:
    plugins = Plugins().load(only="none")
    plugins.register(Voices(reachable), "voices")
    persona = Persona(name="Tess", language=language, voice=VoiceConfig(engine="auto", fallback=["robot", "english"]))
    return Speaker(Bus("s1"), persona, VoiceSettings.model_validate({"tts": {"online": online}}), plugins)


async def test_auto_follows_language_priority_and_reachability_from_metadata() -> None:
    assert await speaker_for("en", reachable=True).chain() == ["cloud", "english", "robot"]
    assert await speaker_for("en", reachable=False).chain() == ["english", "robot"]
    assert await speaker_for("zh", reachable=True, online="never").chain() == ["mandarin", "robot", "english"]
    assert await speaker_for("zh", reachable=False, online="always").chain() == ["cloud", "mandarin", "robot",
                                                                                 "english"]
    speaker = speaker_for("en", reachable=True)
    chunks = await collect(speaker.speak("Hello.", turn_id=1))
    assert chunks[0].words and speaker.used == ["cloud"]


async def test_the_built_in_voices_declare_their_abilities(voice_fay: Fay) -> None:
    regs = {r.name: r for r in voice_fay.plugins.candidates("tts", "zh")}
    names = voice_fay.plugins.names("tts")
    remote = [n for n in ("remote",) if n in names]  # the shared speech server's engine: any language, if set up
    mandarin = [n for n in ("gcin", "kokoro") if n in names]  # if installed
    assert list(regs) == ["edge", *remote, *mandarin, "espeak"] and regs["edge"].online
    assert not regs["espeak"].online and not any(regs[n].online for n in remote)
    assert [r.name for r in voice_fay.plugins.candidates("tts", "en", online=False)] == [*remote, "piper", "espeak"]
    edge, piper = voice_fay.plugins.engine("tts", "edge"), voice_fay.plugins.engine("tts", "piper")
    assert isinstance(edge, ChecksReachability) and isinstance(edge, ChecksVoice)
    assert not isinstance(edge, SupportsWarmUp) and not isinstance(piper, ChecksReachability)
    assert isinstance(piper, SupportsWarmUp) and piper.accepts_voice("en_US-joe-medium")
    assert not piper.accepts_voice("en-US-AriaNeural") and edge.accepts_voice("en-US-AriaNeural")
