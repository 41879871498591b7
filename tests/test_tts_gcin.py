"""The recorded-syllable Mandarin voice (gcin): it speaks clause by clause with each character's time, whisper
understands it, ``auto`` puts it first for Chinese personas offline, and when its recordings are missing or
altered it says what to install and the chain goes on (kokoro, then espeak)."""

from __future__ import annotations

import logging
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

import fay_espeak
import fay_gcin
import fay_kokoro
from fay_core.bus import Bus
from fay_core.engines import AudioChunk
from fay_core.errors import EngineError, EngineUnavailable
from fay_core.persona import PersonaStore
from fay_core.plugins import Plugins
from fay_core.settings import VoiceSettings
from fay_core.voice.audio import resample
from fay_core.voice.metrics import character_error_rate
from fay_core.voice.tts import Speaker
from fay_gcin import PACKAGED_DIR, GcinSettings, GcinTTS
from fay_gcin.syllables import Reader, clauses
from fay_whisper import WhisperASR, WhisperSettings

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not PACKAGED_DIR.is_dir(), reason="apt-get install gcin-voice")]

#: the first four of bench/voice_zh.py's ten bank sentences
SENTENCES = ["请问您今天想办理什么业务？", "我们的营业时间是周一至周五上午九点到下午五点。",
             "您的账户余额是三千五百元。", "请您在这里签名。"]


@pytest.fixture(scope="module")
def gcin() -> GcinTTS:
    return GcinTTS()


@pytest.fixture(scope="module")
def asr() -> WhisperASR:
    return WhisperASR(WhisperSettings(model="base", download=False))


async def speak(engine: GcinTTS, text: str, language: str = "zh", rate: float = 1.0) -> list[AudioChunk]:
    return [c async for c in engine.synthesize(text, language=language, rate=rate)]


def seconds(chunk: AudioChunk) -> float:
    return len(chunk.pcm) / 2 / chunk.sample_rate


async def test_it_speaks_clause_by_clause_with_each_characters_time(gcin: GcinTTS) -> None:
    text = "好的，请您稍等，我帮您查一下最近的交易记录。"
    chunks = await speak(gcin, text)
    assert [c.text for c in chunks] == ["好的，", "请您稍等，", "我帮您查一下最近的交易记录。"] == clauses(text)
    for c in chunks:
        spoken = [ch for ch in c.text if ch not in "，。"]
        assert c.sample_rate == 24000 and 0.2 * len(spoken) < seconds(c) < 0.7 * len(spoken) + 0.4, c.text
        assert [w.word[0] for w in c.words] == spoken and "".join(w.word for w in c.words) == c.text
        starts, ends = [w.start_ms for w in c.words], [w.end_ms for w in c.words]
        assert starts[0] == 0 and all(s < e <= n for s, e, n in zip(starts, ends, [*starts[1:], 1e9], strict=True))
        assert ends[-1] < seconds(c) * 1000  # the clause's pause comes after its last character
        pcm = np.frombuffer(c.pcm, np.int16)
        mid = [pcm[int((w.start_ms + w.end_ms) / 2 * 24)] for w in c.words]
        assert max(abs(int(x)) for x in pcm) > 3000 and any(abs(int(x)) > 100 for x in mid)


async def test_whisper_understands_it(gcin: GcinTTS, asr: WhisperASR) -> None:
    pairs = []
    for s in SENTENCES:
        pcm = b"".join(c.pcm for c in await speak(gcin, s))
        pairs.append((s, (await asr.transcribe(resample(pcm, 24000, 16000), 16000, language="zh")).text))
    # measured: 0.0 on these four, the syllables of a word joined (0.08 over the bench's ten); espeak's: 0.7-0.8
    assert character_error_rate(pairs) <= 0.2, pairs


async def test_polyphones_tone_sandhi_digits_latin_letters_and_bare_punctuation(gcin: GcinTTS) -> None:
    reader = Reader()
    assert [t.units for t in reader("银行行长")] == [("ㄧㄣ2",), ("ㄏㄤ2",), ("ㄏㄤ2",), ("ㄓㄤ3",)]
    assert [t.units for t in reader("一个")][0] == ("ㄧ2",)  # 一 before a fourth tone: yí
    assert [t.units for t in reader("你好")][0] == ("ㄋㄧ2",)  # third tone before a third tone: ní
    chunks = await speak(gcin, "请到ATM机转账100元，或拨打95588。")
    assert [w.word for w in chunks[0].words][2:4] == ["ATM", "机"] and sum(map(seconds, chunks)) > 5
    assert len((await speak(gcin, "VIP 3.5.1"))[0].pcm) > 0
    assert await speak(gcin, "。！") == [] and await speak(gcin, "") == []
    with pytest.raises(EngineError, match="Mandarin only"):
        await speak(gcin, "hello", language="en")


async def test_a_slower_rate_lengthens_the_pauses(gcin: GcinTTS) -> None:
    normal, slow = await speak(gcin, "请您在这里签名。"), await speak(gcin, "请您在这里签名。", rate=0.7)
    assert seconds(slow[0]) > seconds(normal[0]) + 0.2
    assert gcin.accepts_voice("3") and gcin.accepts_voice("5") and not gcin.accepts_voice("zh-CN-XiaoxiaoNeural")


async def test_the_syllables_of_a_word_run_together(gcin: GcinTTS) -> None:
    """Inside a word (办理, 转账) each syllable is crossfaded into the one before, the two characters meeting in the
    middle of it; between words a pause; ``join_ms: 0`` is the voice before, 40 ms silences inside words."""
    joined = (await speak(gcin, "办理转账。"))[0]
    apart = (await speak(GcinTTS(GcinSettings(join_ms=0)), "办理转账。"))[0]
    for c, inside in ((joined, 0.0), (apart, 40.0)):
        w = c.words
        assert [x.word for x in w] == ["办", "理", "转", "账。"]
        assert w[1].start_ms - w[0].end_ms == pytest.approx(inside, abs=0.1)
        assert w[3].start_ms - w[2].end_ms == pytest.approx(inside, abs=0.1)
        assert w[2].start_ms - w[1].end_ms == pytest.approx(100, abs=0.1)  # between the two words
    assert seconds(joined) < seconds(apart) - 0.06


@pytest.fixture
def plugins() -> Plugins:
    """The three offline Mandarin voices, registered as their entry points register them."""
    loaded = Plugins().load(only="none")
    loaded.register(fay_gcin, "gcin")
    loaded.register(fay_kokoro, "kokoro")
    loaded.register(fay_espeak, "espeak")
    return loaded


def zh_speaker(plugins: Plugins) -> Speaker:
    persona = PersonaStore(ROOT / "personas").get("bank_teller_zh")
    return Speaker(Bus("s-zh"), persona, VoiceSettings.model_validate({"tts": {"online": "never"}}), plugins)


async def test_auto_speaks_the_chinese_bank_teller_with_it_offline(plugins: Plugins) -> None:
    speaker = zh_speaker(plugins)
    assert await speaker.chain() == ["gcin", "kokoro", "espeak"]
    await speaker.warm_up()
    chunks = [c async for c in speaker.speak("您好，欢迎光临海港银行。", turn_id=1)]
    assert speaker.used == ["gcin"] and [c.text for c in chunks] == ["您好，", "欢迎光临海港银行。"]
    assert [w.word for w in chunks[1].words] == [*"欢迎光临海港银", "行。"]  # the engine's own timings


async def test_missing_recordings_warn_and_the_chain_goes_on(
    plugins: Plugins, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.setattr(fay_gcin, "PACKAGED_DIR", tmp_path / "no-gcin-voice")  # as if the package were not installed
    with caplog.at_level(logging.WARNING, logger="fay_gcin"):
        speaker = zh_speaker(plugins)
        assert (await speaker.chain())[0] != "gcin" and (await speaker.chain())[-1] == "espeak"
    warning = next(r.getMessage() for r in caplog.records if r.name == "fay_gcin")
    assert "apt-get install gcin-voice" in warning
    chunks = [c async for c in speaker.speak("您好。", turn_id=1)]
    assert chunks and chunks[0].pcm and speaker.used[0] != "gcin"  # the avatar still speaks


def copy_syllables(dst: Path, names: list[str], voice: str = "3") -> Path:
    for name in names:
        (dst / name).mkdir(parents=True)
        shutil.copy(PACKAGED_DIR / name / f"{voice}.ogg", dst / name / f"{voice}.ogg")
    return dst


async def test_altered_packaged_recordings_are_refused_with_what_to_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    folder = copy_syllables(tmp_path / "ogg", ["ㄋㄧ3", "ㄏㄠ3"])
    monkeypatch.setattr(fay_gcin, "PACKAGED_DIR", folder)
    engine = GcinTTS(GcinSettings(cache_dir=tmp_path / "cache"))
    with pytest.raises(EngineUnavailable, match="apt-get install --reinstall gcin-voice"):
        await speak(engine, "你好。")


async def test_a_voice_dir_of_ones_own_recordings_is_spoken_from(tmp_path: Path) -> None:
    """Any folder in gcin-voice's layout; WAV as well as Ogg; syllables it lacks are left out, not a crash."""
    folder = copy_syllables(tmp_path / "mine", ["ㄋㄧ3"])
    (folder / "ㄏㄠ3").mkdir()
    tone = (np.sin(np.arange(8000) / 16000 * 2 * np.pi * 220) * 8000).astype(np.int16)
    with wave.open(str(folder / "ㄏㄠ3" / "3.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)  # resampled to 24 kHz with the Ogg files' 44.1 kHz: refused, they must match
        w.writeframes(tone.tobytes())
    with pytest.raises(EngineUnavailable, match="mix sample rates"):
        await speak(GcinTTS(GcinSettings(voice_dir=folder, cache_dir=tmp_path / "c")), "你好。")
    (folder / "ㄏㄠ3" / "3.wav").unlink()
    shutil.copy(PACKAGED_DIR / "ㄏㄠ3" / "3.ogg", folder / "ㄏㄠ3" / "3.ogg")
    engine = GcinTTS(GcinSettings(voice_dir=folder, cache_dir=tmp_path / "c"))
    chunks = await speak(engine, "你好，银行。")
    assert [w.word for c in chunks for w in c.words] == ["你", "好，"]  # 银行 has no recording here
    again = GcinTTS(GcinSettings(voice_dir=folder, cache_dir=tmp_path / "c"))
    assert list((tmp_path / "c").glob("*.npz")) and len(again.load().index) == 2
    with pytest.raises(EngineUnavailable, match="does not exist"):
        GcinTTS(GcinSettings(voice_dir=tmp_path / "nope"))


async def test_its_character_times_name_the_written_words(plugins: Plugins) -> None:
    """The engine reads the spoken form (两千元, 九五九九九); captions and timings keep the written one."""
    speaker = zh_speaker(plugins)
    chunks = [c async for c in speaker.speak("年费为¥2,000，热线95999。", turn_id=1)]
    assert speaker.used == ["gcin"] and [c.text for c in chunks] == ["年费为¥2,000，", "热线95999。"]
    assert [[w.word for w in c.words] for c in chunks] == [["年", "费", "为", "¥2,000，"], ["热", "线", "95999。"]]
    hotline = chunks[1].words[-1]
    assert hotline.end_ms - hotline.start_ms > 5 * 200  # five syllables' time, from the engine's own timings
