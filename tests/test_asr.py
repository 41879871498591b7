"""faster-whisper ASR (real model, the packaged whisper base): word error rate, Chinese, one shared model."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from fay_core.errors import ConfigError
from fay_whisper import WhisperASR, WhisperSettings, resolve_model
from fay_core.voice.audio import load_audio
from fay_core.voice.metrics import edits, word_error_rate, words


@pytest.fixture(scope="module")
def asr() -> WhisperASR:
    return WhisperASR(WhisperSettings(model="base", download=False))


async def test_librivox_word_error_rate_within_bound(asr: WhisperASR, shared_data: Path) -> None:
    clips = sorted((shared_data / "speech_en").glob("sense_and_sensibility_*.wav"))
    assert len(clips) == 5
    results = await asyncio.gather(*(asr.transcribe(load_audio(c), 16000, language="en") for c in clips))
    pairs = [(c.with_suffix(".txt").read_text(), r.text) for c, r in zip(clips, results, strict=True)]
    assert word_error_rate(pairs) <= 0.15, pairs
    assert all(r.language == "en" for r in results)


async def test_mandarin_in_simplified_characters(asr: WhisperASR, shared_data: Path) -> None:
    ref = "甚至出现交易几乎停滞的情况"
    got = await asr.transcribe(load_audio(shared_data / "speech_zh" / "BAC009S0764W0121.wav"), 16000, language="zh")
    hyp = re.sub(r"[^\u4e00-\u9fff]", "", got.text)
    assert edits(list(ref), list(hyp)) / len(ref) <= 0.2, got.text
    detected = await asr.transcribe(load_audio(shared_data / "speech_zh" / "chinese.flac"), 16000, language=None)
    assert detected.language == "zh" and "自己" in detected.text


async def test_audio_longer_than_the_window_goes_through_30s_windows(shared_data: Path) -> None:
    long_path = WhisperASR(WhisperSettings(model="base", download=False, window_s=5))
    got = await long_path.transcribe(load_audio(shared_data / "speech_en" / "jfk.flac"), 16000, language="en")
    assert words(got.text)[-4:] == ["do", "for", "your", "country"], got.text


async def test_one_model_shared_by_all_sessions(fay, shared_data: Path) -> None:
    a = fay.plugins.engine("asr", "whisper")
    assert a is fay.plugins.engine("asr", "whisper")
    clip = load_audio(shared_data / "speech_en" / "english.wav")
    results = await asyncio.gather(*(a.transcribe(clip, 16000, language="en") for _ in range(4)))
    assert all(words(r.text) in (["1", "2", "3"], ["one", "two", "three"]) for r in results), results
    other = WhisperASR(WhisperSettings(model="base", download=False))
    assert other.load() is a.load()  # a second engine object reuses the loaded model


def test_bad_model_settings_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no model.bin"):
        resolve_model(WhisperSettings(model=str(tmp_path)))
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_model(WhisperSettings(model=str(tmp_path / "missing")))
    with pytest.raises(ConfigError, match="downloads are off"):
        resolve_model(WhisperSettings(model="large-v3", download=False))
