"""Chinese text as a Mandarin voice reads it: amounts, rates, dates, times, phone numbers, codes, English; the TTS
chain hands the engine the spoken form and keeps the shown text (and word timings on it) for captions."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings as hsettings, strategies as st

from fay_core import hookimpl
from fay_core.app import Fay
from fay_core.bus import Bus
from fay_core.engines import AudioChunk
from fay_core.events import Interrupted, WordPlayed, WordTiming
from fay_core.hookspecs import RegisterEngine
from fay_core.persona import Persona, VoiceConfig
from fay_core.plugins import Plugins
from fay_core.settings import VoiceSettings
from fay_core.testing import Recorder as EventRecorder
from fay_core.voice.speech_text import SpeechText, read_number, speech_text
from fay_core.voice.playout import Playout
from fay_core.voice.splitter import SentenceSplitter, speakable
from fay_core.voice.tts import Speaker, estimate_words, shown_chunk, split_words, trim_chunk
from fay_espeak import EspeakTTS
from tests.test_voice_pipeline import voice_settings  # noqa: F401 (a fixture)

ROOT = Path(__file__).resolve().parent.parent
DIGIT = re.compile("[0-9０-９]")


def zh(text: str) -> str:
    return speech_text(text, "zh")


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("¥2,000", "两千元"),
        ("￥2000", "两千元"),
        ("2000元", "两千元"),
        ("2,000.50元", "两千元五角"),
        ("12.35元", "十二元三角五分"),
        ("100.05元", "一百元零五分"),
        ("0.05元", "五分"),
        ("2元", "两元"),
        ("RMB 500", "五百元"),
        ("人民币500元", "人民币五百元"),
        ("1.5万元", "一点五万元"),
        ("¥1.5万", "一点五万元"),
        ("人民币2亿元", "人民币两亿元"),
        ("$100", "一百美元"),
        ("100 USD", "一百美元"),
        ("最高1,000,000元", "最高一百万元"),
        ("10,000至300,000元", "一万至三十万元"),
        ("1,200元", "一千两百元"),
        ("每月30元/月", "每月三十元每月"),
        ("¥-50", "负五十元"),
    ],
)
def test_amounts_read_as_a_teller_counts_money(text: str, said: str) -> None:
    assert zh(text) == said


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("3.5%", "百分之三点五"),
        ("年利率1.75%", "年利率百分之一点七五"),
        ("年利率为2.10%（浮动）", "年利率为百分之二点一零（浮动）"),  # the digits as written
        ("2%", "百分之二"),
        ("-0.5%", "负百分之零点五"),
        ("0.5‰", "千分之零点五"),
        ("3%-5%", "百分之三到百分之五"),
        ("10％", "百分之十"),
    ],
)
def test_percentages(text: str, said: str) -> None:
    assert zh(text) == said


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("2026年12月1日", "二零二六年十二月一日"),
        ("2026-12-01", "二零二六年十二月一日"),
        ("2026/1/5", "二零二六年一月五日"),
        ("12月1日", "十二月一日"),
        ("3月15号", "三月十五号"),
        ("2026年", "二零二六年"),
        ("2026年3月", "二零二六年三月"),
        ("2月", "二月"),
        ("2026-13-45", "两千零二十六到十三到四十五"),  # not a date: numbers and a range
    ],
)
def test_dates(text: str, said: str) -> None:
    assert zh(text) == said


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("9:00", "九点"),
        ("17:30", "十七点三十分"),
        ("9:05", "九点零五分"),
        ("2:00", "两点"),
        ("12:05:09", "十二点零五分零九秒"),
        ("9:00-17:00", "九点到十七点"),
        ("9:00 ~ 13:30", "九点到十三点三十分"),
        ("周一至周五9:00至17:00", "周一至周五九点至十七点"),
        ("17:00以后", "十七点以后"),
    ],
)
def test_times_and_ranges(text: str, said: str) -> None:
    assert zh(text) == said


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("请拨打95999", "请拨打九五九九九"),
        ("热线400-820-8820", "热线四零零 八二零 八八二零"),
        ("400-800-1234", "四零零 八零零 幺二三四"),
        ("13812345678", "幺三八幺二三四五六七八"),
        ("010-12345678", "零幺零 幺二三四五六七八"),
        ("拨打110", "拨打幺幺零"),
        ("尾号1234的卡", "尾号幺二三四的卡"),
        ("卡号：6222", "卡号：六二二二"),
        ("验证码是 8812", "验证码是 八八幺二"),
        ("账号621700001", "账号六二幺七零零零零幺"),
        ("拨打24小时客服热线", "拨打二十四小时客服热线"),  # a count after 拨打 is still a count
    ],
)
def test_phone_and_card_numbers_are_read_digit_by_digit(text: str, said: str) -> None:
    assert zh(text) == said


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("HB-2026A", "H B 杠 二零二六 A"),
        ("HB-TD-12M", "H B 杠 T D 杠 幺二 M"),
        ("HB-CC-PLT", "H B 杠 C C 杠 P L T"),
        ("（HB-SV-01）", "（H B 杠 S V 杠 零幺）"),
        ("G101次", "G 幺零幺次"),
    ],
)
def test_product_codes_are_spelled(text: str, said: str) -> None:
    assert zh(text) == said


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("3个工作日", "三个工作日"),
        ("2个工作日", "两个工作日"),
        ("2天", "两天"),
        ("12个月", "十二个月"),
        ("第2步", "第二步"),
        ("第2个", "第二个"),
        ("共222笔", "共两百二十二笔"),
        ("20人", "二十人"),
        ("1至5年", "一至五年"),
        ("3.5", "三点五"),
        ("-3.5", "负三点五"),
        ("1.1万", "一点一万"),
        ("100005", "幺零零零零五"),  # five bare digits, no unit: an identifier
        ("100005元", "十万零五元"),
        ("1010元", "一千零一十元"),
        ("100010000元", "一亿零一万元"),
        ("12000元", "一万两千元"),
        ("3-5个工作日", "三到五个工作日"),
        ("T+1到账", "T加一到账"),
        ("1/3的额度", "三分之一的额度"),
        ("第1、2步", "第一、二步"),
    ],
)
def test_counts_ordinals_decimals_and_negatives(text: str, said: str) -> None:
    assert zh(text) == said


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("在ATM取款", "在A T M取款"),
        ("VIP客户", "V I P客户"),
        ("兑换USD", "兑换U S D"),
        ("在App中申请", "在App中申请"),  # a word the voice can say
        ("下载PDF文件", "下载P D F文件"),
        ("e-mail和Wi-Fi", "e-mail和Wi-Fi"),
        ("请用iPhone打开", "请用iPhone打开"),
    ],
)
def test_english_inside_chinese(text: str, said: str) -> None:
    assert zh(text) == said


def test_other_languages_are_left_as_they_are() -> None:
    text = "Appelez le 400-800-1234 avant 17:00 ; les frais sont de 2 000,50 € (3,5 %)."
    assert speech_text(text, "fr") == text
    said = SpeechText.of(text, "fr")
    assert said.spoken == text and said.rewrites == ()


# --- English ----------------------------------------------------------------------------------------------


def en(text: str) -> str:
    return speech_text(text, "en")


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("9:00", "nine o'clock"),
        ("9:30", "nine thirty"),
        ("9:05", "nine oh five"),
        ("17:00", "five p.m."),
        ("13:30", "one thirty p.m."),
        ("12:00", "twelve noon"),
        ("0:00", "midnight"),
        ("12:05:09", "twelve oh five and nine seconds"),
        ("5:30 pm", "five thirty p.m."),
        ("10am", "ten a.m."),
        ("from 9:00 to 17:00", "from nine a.m. to five p.m."),  # a morning hour in a range ending after noon
        ("9:00-17:00", "nine a.m. to five p.m."),
        ("from 9:00 to 11:30", "from nine o'clock to eleven thirty"),
        ("We close at 17:00.", "We close at five p.m."),  # one period at the end
    ],
)
def test_english_times_read_as_a_person_says_them(text: str, said: str) -> None:
    assert en(text) == said


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("$2,000", "two thousand dollars"),
        ("$2,000.50", "two thousand dollars and fifty cents"),
        ("$1", "one dollar"),
        ("$0.50", "fifty cents"),
        ("$0.01", "one cent"),
        ("$1.5 million", "one point five million dollars"),
        ("-$50", "minus fifty dollars"),
        ("€20", "twenty euros"),
        ("£3.50", "three pounds and fifty pence"),
        ("¥2,000", "two thousand yuan"),
        ("HK$100", "one hundred Hong Kong dollars"),
        ("100 USD", "one hundred US dollars"),
        ("3.85%", "three point eight five percent"),
        ("2%", "two percent"),
        ("-0.5%", "minus zero point five percent"),
        ("3%-5%", "three percent to five percent"),
    ],
)
def test_english_amounts_and_rates(text: str, said: str) -> None:
    assert en(text) == said


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("2,000", "two thousand"),
        ("1,250,000", "one million two hundred fifty thousand"),
        ("115", "one hundred fifteen"),
        ("3.5", "three point five"),
        ("-3", "minus three"),
        ("007", "zero zero seven"),
        ("3-5 days", "three to five days"),
        ("1st, 2nd, 3rd, 11th, 22nd, 40th, 100th", "first, second, third, eleventh, twenty-second, fortieth, "
         "one hundredth"),
        ("in 2026", "in twenty twenty-six"),
        ("2005", "two thousand five"),
        ("1905", "nineteen oh five"),
        ("1900", "nineteen hundred"),
        ("2026-12-01", "December first, twenty twenty-six"),
        ("call 95999", "call nine five nine nine nine"),  # an identifier, digit by digit
        ("400-800-1234", "four oh oh, eight oh oh, one two three four"),
        ("(212) 555-1234", "two one two, five five five, one two three four"),
        ("555-1234", "five five five, one two three four"),
        ("1/2 and 3/4 and 2/3", "one half and three quarters and two thirds"),
        ("the HB-TD-06M deposit", "the H B dash T D dash zero six M deposit"),
        ("a 6-month deposit", "a six-month deposit"),
        ("no digits here.", "no digits here."),
    ],
)
def test_english_numbers_dates_and_phone_numbers(text: str, said: str) -> None:
    assert en(text) == said


def test_every_english_answer_of_the_bank_reads_without_a_digit() -> None:
    data = yaml.safe_load((ROOT / "knowledge/demo_bank/en/faq.yaml").read_text(encoding="utf-8"))
    answers = [entry["answer"] for entry in data["faq"]]
    answers += [line for line in (ROOT / "knowledge/demo_bank/en/cards.md").read_text(encoding="utf-8")
                .splitlines() if DIGIT.search(line)]
    assert len(answers) > 20
    for answer in answers:
        for sentence in _sentences(answer):
            said = en(sentence)
            assert not DIGIT.search(said), (sentence, said)
            assert en(said) == said
    hours = en(answers[0])
    assert "Monday to Friday from nine a.m. to five p.m. and Saturday from nine a.m. to one p.m." in hours, hours


def test_english_word_timings_name_the_written_words() -> None:
    said = SpeechText.of("The fee is $2,000 from 9:00.", "en")
    assert said.spoken == "The fee is two thousand dollars from nine o'clock."
    pcm = (b"\x00\x00" * 800) + (b"\x00\x30\x00\xd0" * 8000) + (b"\x00\x00" * 800)
    chunk, _ = shown_chunk(AudioChunk(pcm, 16000, (), said.spoken), said)
    assert chunk.text == said.shown
    assert [w.word for w in chunk.words] == ["The", "fee", "is", "$2,000", "from", "9:00."]
    spoken = estimate_words(said.spoken, pcm, 16000)
    amount, time_ = chunk.words[3], chunk.words[5]
    # the amount spans "two thousand dollars", the time "nine o'clock."
    assert (amount.start_ms, amount.end_ms) == (spoken[3].start_ms, spoken[5].end_ms)
    assert (time_.start_ms, time_.end_ms) == (spoken[7].start_ms, spoken[8].end_ms)


_EN_PIECES = st.sampled_from(
    list("0123456789") + list(",.:-/%$€£¥ ") + ["am", "pm", "st", "th", "USD", "million", "k", "to", "(", ")", "a"]
)


@hsettings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(_EN_PIECES, st.text(max_size=2)), max_size=40).map("".join))
def test_any_english_text_reads_without_digits_and_the_rewrites_account_for_it(text: str) -> None:
    said = SpeechText.of(text, "en")
    assert not re.search("[0-9]", said.spoken), said
    rebuilt, pos = [], 0
    for s0, s1, p0, p1 in said.rewrites:
        rebuilt += [text[pos:s0], said.spoken[p0:p1]]
        pos = s1
    assert "".join(rebuilt) + text[pos:] == said.spoken


def test_read_number() -> None:
    assert read_number("2", before="个") == "两" and read_number("2", before="月") == "二"
    assert read_number("007") == "零零七" and read_number("12345678901234567") == "一二三四五六七八九零一二三四五六七"
    assert read_number("1,000,000.25") == "一百万点二五" and read_number("0") == "零"


def _faq_answers() -> list[str]:
    data = yaml.safe_load((ROOT / "knowledge/demo_bank/zh/faq.yaml").read_text(encoding="utf-8"))
    return [entry["answer"] for entry in data["faq"]]


def _product_lines() -> list[str]:
    text = (ROOT / "knowledge/demo_bank/zh/products.md").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if DIGIT.search(line)]


def test_every_answer_of_the_chinese_bank_reads_without_a_digit() -> None:
    answers = _faq_answers() + _product_lines()
    assert len(answers) > 30
    for answer in answers:
        for sentence in _sentences(answer):
            said = zh(sentence)
            assert not DIGIT.search(said), (sentence, said)
            assert zh(said) == said
    # a few the bank's customers will hear
    said = "\n".join(zh(a) for a in _faq_answers())
    for heard in ["周一至周五九点至十七点，周六九点至十三点", "拨打二十四小时客服热线四零零 八零零 幺二三四",
                  "借记卡在A T M每日取现限额为两万元", "（H B 杠 T D 杠 幺二 M）年利率为百分之二点六零"]:
        assert heard in said


def _sentences(text: str) -> list[str]:
    splitter = SentenceSplitter()
    return [speakable(s) for s in splitter.feed(text) + splitter.flush()]


# --- properties -------------------------------------------------------------------------------------------

_PIECES = st.sampled_from(
    list("0123456789０１２") + list(",.:-/%‰¥￥$ ") + ["元", "万", "亿", "年", "月", "日", "号", "个", "天", "第", "至",
     "热线", "尾号", "拨打", "RMB", "USD", "ATM", "App", "HB", "A", "x", "，", "。", "：", "（", "）", "利率", "小时"]
)


@hsettings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(_PIECES, st.text(max_size=2)), max_size=40).map("".join))
def test_any_text_reads_without_digits_and_reading_twice_changes_nothing(text: str) -> None:
    said = SpeechText.of(text, "zh")
    assert not DIGIT.search(said.spoken), said
    assert zh(said.spoken) == said.spoken
    # the rewrites account for every difference between the two texts
    rebuilt, pos = [], 0
    for s0, s1, p0, p1 in said.rewrites:
        rebuilt += [text[pos:s0], said.spoken[p0:p1]]
        pos = s1
    assert "".join(rebuilt) + text[pos:] == said.spoken
    words = tuple(WordTiming(w, float(i), i + 0.5) for i, w in enumerate(split_words(said.spoken)))
    shown = said.shown_words(words)
    cursor = 0
    for w in shown:  # the shown words are in the shown text, in order (the playout clock looks them up so)
        idx = text.find(w.word, cursor)
        assert idx >= 0, (w, text)
        cursor = idx + len(w.word)


def test_reading_is_cheap() -> None:
    import time

    sentences = [s for a in _faq_answers() for s in _sentences(a)]
    t0 = time.perf_counter()
    for _ in range(20):
        for s in sentences:
            SpeechText.of(s, "zh")
    per_sentence_us = (time.perf_counter() - t0) / (20 * len(sentences)) * 1e6
    assert per_sentence_us < 500, per_sentence_us  # measured ~20-40 µs; the bound leaves room for a loaded machine


# --- the TTS chain ----------------------------------------------------------------------------------------


def test_word_timings_name_the_shown_words() -> None:
    said = SpeechText.of("年费为¥2,000，请拨打95999。", "zh")
    assert said.spoken == "年费为两千元，请拨打九五九九九。"
    pcm = (b"\x00\x00" * 800) + (b"\x00\x30\x00\xd0" * 8000) + (b"\x00\x00" * 800)
    chunk, end = shown_chunk(AudioChunk(pcm, 16000, (), said.spoken), said)
    assert chunk.text == said.shown and end == len(said.spoken)
    assert [w.word for w in chunk.words] == ["年", "费", "为", "¥2,000，", "请", "拨", "打", "95999。"]
    spoken = estimate_words(said.spoken, pcm, 16000)
    # the amount spans the three syllables 两千元 and the hotline the five of 九五九九九
    amount, hotline = chunk.words[3], chunk.words[7]
    assert (amount.start_ms, amount.end_ms) == (spoken[3].start_ms, spoken[5].end_ms)
    assert (hotline.start_ms, hotline.end_ms) == (spoken[9].start_ms, spoken[13].end_ms)


def test_a_chunk_of_a_streamed_sentence_shows_its_own_part() -> None:
    said = SpeechText.of("限额为20,000元。热线95999。", "zh")
    first, second = "限额为两万元。", "热线九五九九九。"
    assert said.spoken == first + second
    a, cursor = shown_chunk(AudioChunk(b"\x00\x10" * 1600, 16000, (), first), said)
    b, _ = shown_chunk(AudioChunk(b"\x00\x10" * 1600, 16000, (), second), said, cursor)
    assert (a.text, b.text) == ("限额为20,000元。", "热线95999。")
    assert a.words[-1].word == "20,000元。" and b.words[-1].word == "95999。"


class Recorder:
    """A TTS engine that keeps what it was asked to say and answers with a tone."""

    name = "recorder"

    def __init__(self) -> None:
        self.heard: list[str] = []

    async def synthesize(
        self, text: str, *, voice: str | None = None, language: str = "en", rate: float = 1.0
    ) -> AsyncIterator[AudioChunk]:
        self.heard.append(text)
        yield AudioChunk(b"\x00\x20" * 16000, 16000, (), text)


class RecorderPlugin:
    def __init__(self) -> None:
        self.engine = Recorder()

    @hookimpl
    def register_tts_engines(self, register: RegisterEngine) -> None:
        register("recorder", lambda: self.engine, languages=("zh", "en"))


@pytest.mark.parametrize("language", ["zh", "en"])
async def test_the_speaker_gives_the_engine_the_spoken_form_and_shows_the_written_one(language: str) -> None:
    plugins = Plugins().load(only="none")
    plugin = RecorderPlugin()
    plugins.register(plugin, "recorder")
    persona = Persona(name="小薇", language=language, voice=VoiceConfig(engine="recorder"))
    speaker = Speaker(Bus("s1"), persona, VoiceSettings(), plugins)
    text = "ATM每日取现限额为20,000元，详询95999。"
    chunks = [c async for c in speaker.speak(text, turn_id=1)]
    if language == "zh":
        assert plugin.engine.heard == ["A T M每日取现限额为两万元，详询九五九九九。"]
    else:
        assert plugin.engine.heard == ["ATM每日取现限额为twenty thousand元，详询nine five nine nine nine。"]
    (chunk,) = chunks
    assert chunk.text == text and "".join(w.word for w in chunk.words) == text


class ToneVoice(Recorder):
    """A voice that answers every sentence with a second of tone and no word timings (Fay estimates them)."""

    name = "tone"

    async def synthesize(
        self, text: str, *, voice: str | None = None, language: str = "en", rate: float = 1.0
    ) -> AsyncIterator[AudioChunk]:
        self.heard.append(text)
        t = np.arange(24000) / 24000
        yield AudioChunk((np.sin(2 * np.pi * 220 * t) * 8000).astype(np.int16).tobytes(), 24000, (), text)


async def test_an_interrupted_turn_keeps_the_written_words_it_played() -> None:
    plugins = Plugins().load(only="none")
    plugin = RecorderPlugin()
    plugin.engine = ToneVoice()
    plugins.register(plugin, "tone")
    bus = Bus("s1")
    persona = Persona(name="小薇", language="zh", voice=VoiceConfig(engine="recorder"))
    speaker = Speaker(bus, persona, VoiceSettings(), plugins)
    recorder = EventRecorder(bus)
    playout = Playout(bus)
    playout.start()
    text = "年费为¥2,000，请拨打95999。"
    async for chunk in speaker.speak(text, turn_id=1):
        playout.schedule(1, chunk)
    await asyncio.sleep(0.6)
    played = playout.interrupt(onset=0.0)
    await bus.idle()
    assert plugin.engine.heard == ["年费为两千元，请拨打九五九九九。"]
    heard = [w.word for w in recorder.of(WordPlayed)]
    assert heard and "".join(heard) == played and text.startswith(played)
    # 0.6 s is past the amount (its three syllables end near 0.4 s) and before the hotline (from 0.66 s)
    assert "¥2,000，" in heard and "95999。" not in heard
    (interrupted,) = recorder.of(Interrupted)
    assert interrupted.played_text == played
    await bus.close()


async def test_espeak_reads_the_spoken_form_and_the_caption_keeps_the_written_one(voice_fay: Fay) -> None:
    session = await voice_fay.create_session("voice_zh")
    session.persona = session.persona.model_copy(update={"voice": VoiceConfig(engine="espeak")})
    speaker = Speaker(session.bus, session.persona, voice_fay.settings.voice, voice_fay.plugins)
    text = "年费为¥2,000，热线95999。"
    (chunk,) = [c async for c in speaker.speak(text, turn_id=1)]
    # espeak is deterministic: the audio is exactly that of the spoken form
    (direct,) = [c async for c in EspeakTTS().synthesize("年费为两千元，热线九五九九九。", language="zh")]
    assert chunk.pcm == direct.pcm and speaker.used == ["espeak"]
    assert chunk.text == text
    assert [w.word for w in chunk.words] == ["年", "费", "为", "¥2,000，", "热", "线", "95999。"]
    assert all(a.end_ms <= b.start_ms + 1e-6 for a, b in zip(chunk.words, chunk.words[1:], strict=False))
    assert chunk.words[-1].end_ms <= len(chunk.pcm) / 2 / chunk.sample_rate * 1000


@pytest.fixture
async def voice_fay(voice_settings):  # type: ignore[no-untyped-def]  # noqa: F811
    async with Fay(voice_settings) as app:
        yield app


def test_a_first_piece_is_read_as_going_on_and_keeps_its_written_words() -> None:
    said = SpeechText.of("We are open from 9:00 to 17:00", "en").continued()
    assert said.spoken == "We are open from nine a.m. to five p.m.,"
    words = tuple(WordTiming(w, float(i), i + 0.5) for i, w in enumerate(split_words(said.spoken)))
    assert [w.word for w in said.shown_words(words)] == ["We", "are", "open", "from", "9:00", "to", "17:00"]
    assert SpeechText.of("营业时间为周一至周五", "zh").continued().spoken == "营业时间为周一至周五，"
    assert SpeechText.of("We are open every weekday,", "en").continued().spoken == "We are open every weekday,"
    plain = SpeechText.of("We are open every weekday", "en").continued()
    assert plain.spoken == "We are open every weekday," and plain.shown == "We are open every weekday"
    chunk, _ = shown_chunk(AudioChunk(b"\x00\x10" * 1600, 16000, (), plain.spoken), plain)
    assert chunk.text == plain.shown and chunk.words[-1].word == "weekday"


def test_trimming_a_seam_moves_the_word_timings_with_the_audio() -> None:
    rate = 16000
    tone = (np.sin(np.arange(rate // 2) / 5) * 8000).astype(np.int16).tobytes()
    pcm = bytes(rate * 2 * 3 // 10) + tone + bytes(rate * 2 * 4 // 10)  # 300 ms silence, 500 ms tone, 400 ms silence
    chunk = AudioChunk(pcm, rate, (WordTiming("Hello", 300.0, 550.0), WordTiming("there", 560.0, 800.0)), "Hello there")
    cut = trim_chunk(chunk, lead_ms=20, tail_ms=40)
    assert abs(len(cut.pcm) / 2 / rate * 1000 - (20 + 500 + 40)) <= 20  # voiced_span works in 10 ms windows
    shift = (len(pcm) - len(cut.pcm)) / 2 / rate * 1000 - (400 - 40)
    assert [w.word for w in cut.words] == ["Hello", "there"]
    assert abs(cut.words[0].start_ms - (300 - shift)) < 0.2 and abs(cut.words[1].end_ms - (800 - shift)) < 0.2
    assert trim_chunk(chunk) is chunk and trim_chunk(chunk, tail_ms=1000) is chunk  # nothing to cut
    assert cut.text == chunk.text
