"""Text as a voice should read it: Chinese (and, through :mod:`.speech_en`, English) numbers, amounts, dates,
times and codes written out in words.

A Mandarin voice given ``¥2,000`` or ``95999`` guesses (often "二,零" or "九万五千九百九十九"). Fay rewrites a
sentence before it reaches the engine; the caption and the history keep the sentence as the agent wrote it.

:func:`speech_text` gives the spoken form of a sentence; :meth:`SpeechText.of` gives it together with where each
rewritten piece came from, so word timings measured on the spoken form can be told in the shown text
(:meth:`SpeechText.shown_words`).

How ``zh`` text is read (what a bank teller says), in the order the rules are tried:

- **Dates**: ``2026年12月1日``, ``2026-12-01``, ``2026/12/1`` → 二零二六年十二月一日; ``12月1日`` → 十二月一日;
  ``2026年`` → 二零二六年. Years digit by digit, written 零 (how 〇 is said, and every voice knows it).
- **Times**: the 24-hour clock as written, as a bank states its hours: ``9:00`` → 九点, ``17:30`` → 十七点三十分
  (not 下午五点半, which would need a choice the text did not make), ``9:05`` → 九点零五分, ``2:00`` → 两点.
  ``9:00-17:00`` → 九点到十七点 (``至`` stays 至).
- **Phone numbers** (``400-800-1234``, ``010-12345678``, ``13812345678``) digit by digit, 1 read 幺, the groups
  apart: 四零零 八零零 幺二三四.
- **Identifiers**: five or more bare digits with no unit after them (``95999`` → 九五九九九), and any digits after
  热线 电话 拨打 尾号 卡号 账号 编号 密码 验证码 … (``尾号1234`` → 尾号幺二三四), digit by digit with 幺.
- **Amounts**: a currency sign or code becomes the unit after the number (``¥2,000``, ``RMB 500``, ``2000元`` →
  两千元; ``$100``, ``100 USD`` → 一百美元; ``人民币500元`` → 人民币五百元). Cents of 元 are counted as a teller
  counts money, 元角分: ``2,000.50元`` → 两千元五角, ``12.35元`` → 十二元三角五分, ``0.05元`` → 五分. Decimals
  before 万 亿 are read 点: ``1.5万元`` → 一点五万元.
- **Percentages**: ``3.5%`` → 百分之三点五, ``0.5‰`` → 千分之零点五, ``-1%`` → 负百分之一; decimals keep the digits
  written (``2.10%`` → 百分之二点一零: the caption shows them).
- **Codes**: capitals with digits or dashes are spelled: letters apart, digits one by one (幺), ``-`` read 杠:
  ``HB-TD-12M`` → H B 杠 T D 杠 幺二 M.
- **Numbers**: ``3个工作日`` → 三个工作日, ``-3.5`` → 负三点五, ``1至5年`` → 一至五年, ``3%-5%`` → 百分之三到百分之五,
  ``30元/月`` → 三十元每月, ``1/3`` → 三分之一, ``T+1`` → T加一. 2 is 两 before a measure word (两个, 两天,
  两年, 两万) and before 百 千 万 亿 (两百, 一万两千), else 二 (二月, 第二个, 二十).
- **English**: capitals of 2 to 5 letters are spelled (``ATM`` → A T M, ``VIP``, ``USD``, ``PDF``): Mandarin voices
  read a spaced letter as its name but may try an acronym as a word. Words in lower or mixed case (``App``,
  ``iPhone``, ``e-mail``) are left to the voice.

Full-width digits and ``％`` are read like ASCII ones. Numbers of more than 16 digits are read digit by digit.
English (``en``) is read by the rules of :mod:`fay_core.voice.speech_en` (``9:00`` → nine o'clock, ``$2,000`` →
two thousand dollars); other languages are returned unchanged.

It runs once per sentence on the event loop: one regular-expression pass, no dictionary: about 30 µs for a
sentence of the demo bank's Chinese answers, under 2 µs for English (``bench/speech_text.py``). It is written
here rather than taken from ``cn2an``, whose ``transform`` reads ``2,000`` as "二,零", ``9:00-17:00`` as
"九:零负十七:零", ``95999`` as a quantity and 2000 as 二千 (not a teller's 两千), at ~100 µs a sentence.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from ..events import WordTiming
from ..text import is_wide
from .speech_en import english_pieces

__all__ = ["SpeechText", "read_digits", "read_number", "speech_text"]

_DIGITS = "零一二三四五六七八九"
_DIAL = "零幺二三四五六七八九"  # phone numbers, card and account numbers, codes
_SMALL = ("", "十", "百", "千")
_BIG = ("", "万", "亿", "万亿")
_FULL_WIDTH = str.maketrans({**{chr(0xFF10 + i): str(i) for i in range(10)}, "％": "%", "：": ":"})

#: measure words and units after which 2 is read 两 (两个, 两天, 两年); 月 alone is a month name (二月)
_MEASURES = (
    "个", "天", "年", "周", "小时", "分钟", "秒", "次", "笔", "张", "位", "名", "份", "家", "种", "项", "条", "倍",
    "岁", "元", "块", "角", "万", "亿", "千", "百", "台", "套", "本", "期", "档", "级", "层", "点",
)
#: words after which digits are an identifier, read one by one
_ID_WORDS = re.compile(
    r"(?:热线|电话|拨打|致电|号码|手机|尾号|卡号|账号|帐号|户号|编号|工号|单号|密码|验证码|邮编|代码|编码|房间|分机)"
    r"(?:是|为|：|:)?\s*$"
)
_CURRENCY = {"¥": "元", "￥": "元", "RMB": "元", "CNY": "元", "人民币": "元", "$": "美元", "US$": "美元",
             "USD": "美元", "€": "欧元", "EUR": "欧元", "HK$": "港元", "HKD": "港元", "£": "英镑", "GBP": "英镑"}

_NUM = r"[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?|[0-9]+(?:\.[0-9]+)?"
_TIME = r"(?<![0-9:])(?:[01]?[0-9]|2[0-4]):[0-5][0-9](?::[0-5][0-9])?(?![0-9:])"
_CUR = r"(?<![A-Za-z])(?:US\$|HK\$|(?:RMB|CNY|USD|EUR|HKD|GBP)(?![A-Za-z]))|[¥￥$€£]|人民币"
_PATTERN = re.compile(
    r"(?=[0-9A-Z¥￥$€£人/+\s\-–~～])(?:"  # where a rule can start: most characters are passed over at once
    + "|".join(
        [
            r"(?P<ymd>(?<![0-9])(?:1[5-9]|2[0-9])[0-9]{2}(?:(?P<s>[-/.])[01]?[0-9](?P=s)[0-3]?[0-9]"
            r"|年[01]?[0-9]月[0-3]?[0-9][日号]|年[01]?[0-9]月|年)(?![0-9]))",
            r"(?P<md>(?<![0-9.])[01]?[0-9]月[0-3]?[0-9][日号])",
            rf"(?P<times>{_TIME}(?:\s*[-–~～至到]\s*{_TIME})?)",
            r"(?P<phone>(?<![0-9-])(?:[0-9]{3,4}(?:[- ][0-9]{3,4}){1,2}|1[3-9][0-9]{9}|[0-9]{3,4}-[0-9]{7,8})"
            r"(?![0-9]))",
            rf"(?P<money>(?P<cur>{_CUR})\s?(?P<amount>-?(?:{_NUM}))(?P<big>万亿|万|亿)?(?P<unit>元|美元|欧元|港元|港币)?)",
            rf"(?P<money2>(?P<amount2>{_NUM})\s?(?P<cur2>RMB|CNY|USD|EUR|HKD|GBP)(?![A-Za-z]))",
            r"(?P<code>(?<![A-Za-z0-9-])(?:[A-Z]{2,}[0-9]*(?:-[A-Z0-9]+)+|[A-Z]+[0-9][A-Z0-9]*|[0-9]+[A-Z][A-Z0-9]*)"
            r"(?![A-Za-z0-9]))",
            r"(?P<fraction>(?<![0-9/.])(?P<num>[0-9]{1,3})/(?P<den>[1-9][0-9]{0,2})(?![0-9/.]))",
            rf"(?P<number>(?P<neg>(?<![0-9A-Za-z.%])-)?(?P<value>{_NUM})(?:(?P<pct>%|‰)|(?P<yuan>元))?)",
            r"(?P<range>(?<=[0-9%‰])\s*[-–~～]\s*(?=[0-9]))",
            r"(?P<per>/(?=[月年天日笔次人个]))",
            r"(?P<plus>(?<=[A-Za-z0-9])\+(?=[0-9]))",
            r"(?P<caps>(?<![A-Za-z])[A-Z]{2,5}(?![A-Za-z]))",
        ]
    )
    + ")"
)
_TRIGGER = re.compile(r"[0-9０-９A-Z¥￥$€£%％‰]")


# --- reading numbers --------------------------------------------------------------------------------------


def read_digits(digits: str, *, dial: bool = True) -> str:
    """``digits`` one by one: ``"95999"`` → 九五九九九; with ``dial`` (phone and card numbers) 1 is 幺."""
    table = _DIAL if dial else _DIGITS
    return "".join(table[int(c)] if c.isdigit() and c.isascii() else c for c in digits)


def _group(n: int) -> str:
    """0 < n < 10000 in words: 两 for a 2 before 百 or 千, no 一 before a leading 十 (十五, not 一十五)."""
    out = ""
    zero = False
    for pos in range(3, -1, -1):
        d = n // 10**pos % 10
        if d == 0:
            zero = bool(out)
            continue
        if zero:
            out += "零"
            zero = False
        if not (d == 1 and pos == 1 and not out):
            out += "两" if d == 2 and pos >= 2 else _DIGITS[d]
        out += _SMALL[pos]
    return out


def _integer(n: int) -> str:
    if n == 0:
        return "零"
    groups: list[int] = []
    while n:
        groups.append(n % 10000)
        n //= 10000
    out = ""
    need_zero = False
    for i in range(len(groups) - 1, -1, -1):
        g = groups[i]
        if g == 0:
            need_zero = bool(out)
            continue
        if out and (need_zero or g < 1000):
            out += "零"
        part = _group(g)
        if out and part.startswith("十"):
            part = "一" + part  # 十万零一十, 一亿一千零一十万
        if part == "二" and i > 0:
            part = "两"  # 两万, 两亿
        out += part + _BIG[i]
        need_zero = False
    return out


def read_number(written: str, *, before: str = "") -> str:
    """A written number (``2,000.50``, ``-3``, ``007``) in words; ``before`` is the text that follows it, which
    decides 两 or 二 for a lone 2 (两个, 二月). More than 16 digits, or a leading zero, is read digit by digit."""
    s = written.replace(",", "")
    sign = ""
    if s.startswith("-"):
        sign, s = "负", s[1:]
    whole, _, frac = s.partition(".")
    if len(whole) > 16 or (len(whole) > 1 and whole.startswith("0")):
        out = read_digits(whole, dial=False)
    else:
        out = _integer(int(whole or "0"))
        if out == "二" and not frac and before.startswith(_MEASURES):
            out = "两"
    if frac:
        out += "点" + read_digits(frac, dial=False)
    return sign + out


def _yuan(written: str) -> str:
    """An amount of 元 as a teller says it: 元角分 (``2,000.50`` → 两千元五角, ``0.05`` → 五分)."""
    s = written.replace(",", "")
    sign = "负" if s.startswith("-") else ""
    whole, _, frac = s.lstrip("-").partition(".")
    if len(frac) > 2 or len(whole) > 16:
        return read_number(written) + "元"
    jiao, fen = (int(c) for c in (frac + "00")[:2])
    n = int(whole or "0")
    out = (("两" if n == 2 else _integer(n)) + "元") if n or not (jiao or fen) else ""
    if jiao:
        out += ("两" if jiao == 2 else _DIGITS[jiao]) + "角"
    if fen:
        out += ("零" if out and not jiao else "") + ("两" if fen == 2 else _DIGITS[fen]) + "分"
    return sign + out


# --- the rules --------------------------------------------------------------------------------------------


def _ymd(m: re.Match[str]) -> str:
    text = m.group("ymd")
    if text.endswith("年") and len(text) == 5:
        return read_digits(text[:4], dial=False) + "年"
    y, rest = text[:4], text[4:]
    parts = re.findall(r"[0-9]+", rest)
    month = int(parts[0])
    day = int(parts[1]) if len(parts) > 1 else 0
    if not 1 <= month <= 12 or (len(parts) > 1 and not 1 <= day <= 31):
        return _plain(text)
    out = read_digits(y, dial=False) + "年" + _integer(month) + "月"
    if len(parts) > 1:
        out += _integer(day) + ("号" if rest.endswith("号") else "日")
    return out


def _md(m: re.Match[str]) -> str:
    text = m.group("md")
    month, day = (int(p) for p in re.findall(r"[0-9]+", text))
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return _plain(text)
    return _integer(month) + "月" + _integer(day) + text[-1]


def _clock(t: str) -> str:
    h, mi, *sec = (int(p) for p in t.split(":"))
    out = ("两" if h == 2 else _integer(h)) + "点"
    if mi:
        out += ("零" if mi < 10 else "") + _integer(mi) + "分"
    if sec and sec[0]:
        out += ("零" if sec[0] < 10 else "") + _integer(sec[0]) + "秒"
    return out


def _times(m: re.Match[str]) -> str:
    text = m.group("times")
    found = re.findall(r"[0-9]+:[0-9]+(?::[0-9]+)?", text)
    if len(found) == 1:
        return _clock(found[0])
    sep = re.search(r"[至到]", text)
    return _clock(found[0]) + (sep.group() if sep else "到") + _clock(found[1])


def _phone(m: re.Match[str]) -> str:
    return read_digits(re.sub(r"[- ]", " ", m.group("phone")))


def _money(m: re.Match[str]) -> str:
    cur, amount, big, unit = m.group("cur"), m.group("amount"), m.group("big") or "", m.group("unit")
    unit_word = unit or _CURRENCY[cur]
    lead = "人民币" if cur == "人民币" else ""
    if unit_word == "元" and not big:
        return lead + _yuan(amount)
    return lead + read_number(amount, before=big or unit_word) + big + unit_word


def _code(m: re.Match[str]) -> str:
    pieces = []
    for part in m.group("code").split("-"):
        for run in re.findall(r"[A-Za-z]+|[0-9]+", part):
            pieces.append(" ".join(run.upper()) if run.isalpha() else read_digits(run))
        pieces.append("杠")
    return " ".join(pieces[:-1])


def _number(m: re.Match[str], text: str) -> str:
    value, pct = m.group("value"), m.group("pct")
    start, end = m.span()
    after = text[end : end + 2]
    if pct:
        sign = "负" if m.group("neg") else ""
        return sign + ("百分之" if pct == "%" else "千分之") + read_number(value)
    bare = "," not in value and "." not in value
    identifier = len(value) >= 5 or _ID_WORDS.search(text[max(0, start - 6) : start])
    if bare and identifier and not m.group("yuan") and not _has_unit(after):
        return ("负" if m.group("neg") else "") + read_digits(value)
    written = ("-" if m.group("neg") else "") + value
    if m.group("yuan"):
        return _yuan(written)
    return read_number(written, before="" if text[start - 1 : start] == "第" else after)


def _has_unit(after: str) -> bool:
    return bool(after) and (after.startswith(_MEASURES) or after[0] in "%‰万亿元月日号")


def _plain(text: str) -> str:
    """Digits inside a piece that looked like a date but is not one, read as numbers."""
    return re.sub(r"[0-9]+", lambda d: read_number(d.group()), text)


_RULES: dict[str, Callable[[re.Match[str]], str]] = {
    "ymd": _ymd,
    "md": _md,
    "times": _times,
    "phone": _phone,
    "money": _money,
    "code": _code,
    "money2": lambda m: read_number(m.group("amount2"), before="元") + _CURRENCY[m.group("cur2")],
    "range": lambda m: "到",
    "fraction": lambda m: read_number(m.group("den")) + "分之" + read_number(m.group("num")),
    "per": lambda m: "每",
    "plus": lambda m: "加",
    "caps": lambda m: " ".join(m.group("caps")),
}


def _chinese_pieces(source: str) -> Iterator[tuple[int, int, str]]:
    for m in _PATTERN.finditer(source):
        kind = str(m.lastgroup)  # the rule's group closes last
        said = _number(m, source) if kind == "number" else _RULES[kind](m)
        start, end = m.span()
        if said != source[start:end]:
            yield start, end, said


# --- the spoken form and its alignment --------------------------------------------------------------------


@dataclass(frozen=True)
class SpeechText:
    """A sentence as shown (:attr:`shown`) and as read aloud (:attr:`spoken`).

    :attr:`rewrites` lists each rewritten piece as ``(shown_start, shown_end, spoken_start, spoken_end)``, in
    order; the text between pieces is the same in both.
    """

    shown: str
    spoken: str
    rewrites: tuple[tuple[int, int, int, int], ...] = ()

    @classmethod
    def of(cls, text: str, language: str) -> SpeechText:
        """The spoken form of ``text`` in ``language`` (``zh``: see the module's table; ``en``:
        :mod:`fay_core.voice.speech_en`; others: unchanged)."""
        if language.startswith("en"):
            return cls.rewritten(text, english_pieces(text))
        if not language.startswith("zh") or not _TRIGGER.search(text):
            return cls(text, text)
        source = text.translate(_FULL_WIDTH)
        return cls.rewritten(text, _chinese_pieces(source))

    @classmethod
    def rewritten(cls, text: str, pieces: Iterable[tuple[int, int, str]]) -> SpeechText:
        """``text`` with each ``(start, end, spoken)`` of ``pieces`` (in order, not overlapping) read as ``spoken``."""
        out: list[str] = []
        rewrites: list[tuple[int, int, int, int]] = []
        pos = 0
        length = 0
        for start, end, said in pieces:
            out.append(text[pos:start])
            length += start - pos
            rewrites.append((start, end, length, length + len(said)))
            out.append(said)
            length += len(said)
            pos = end
        if not rewrites:
            return cls(text, text)
        out.append(text[pos:])
        return cls(text, "".join(out), tuple(rewrites))

    def continued(self) -> SpeechText:
        """This text read as the first part of a sentence: a comma ends the spoken form (the voice's intonation
        goes on rather than falls), unless a clause mark ends it already; the shown text is unchanged."""
        if not self.spoken or self.spoken.rstrip()[-1:] in set(",，、；;：:"):
            return self
        n, p = len(self.shown), len(self.spoken)
        mark = "，" if is_wide(self.spoken[-1]) else ","
        return SpeechText(self.shown, self.spoken + mark, (*self.rewrites, (n, n, p, p + 1)))

    def shown_span(self, start: int, end: int) -> tuple[int, int]:
        """The part of :attr:`shown` that ``spoken[start:end]`` reads; a piece read from a rewrite is the whole
        rewritten original (``两`` of 两千元 is ``¥2,000``)."""
        return self._shown_at(start, end=False), self._shown_at(end, end=True)

    def _shown_at(self, p: int, *, end: bool) -> int:
        starts = [r[2] for r in self.rewrites]
        i = bisect_right(starts, p - 1 if end else p) - 1
        if i < 0:
            return p
        s0, s1, p0, p1 = self.rewrites[i]
        if p0 <= p < p1 or (end and p0 < p <= p1):
            return s1 if end else s0
        return s1 + (p - p1)

    def shown_words(self, words: tuple[WordTiming, ...], offset: int = 0) -> tuple[WordTiming, ...]:
        """``words`` timed on :attr:`spoken` (from ``offset``) told in :attr:`shown`: the words read from one
        rewritten piece become that piece, from the first one's start to the last one's end. Timings whose words
        are not found in the spoken text (an engine that rewrote it again) are returned as they are."""
        if not self.rewrites:
            return words
        spans: list[tuple[int, int, float, float]] = []
        cursor = offset
        for w in words:
            idx = self.spoken.find(w.word, cursor) if w.word else -1
            if idx < 0:
                return words
            cursor = idx + len(w.word)
            s0, s1 = self.shown_span(idx, cursor)
            if spans and s0 < spans[-1][1]:
                last = spans[-1]
                spans[-1] = (last[0], max(last[1], s1), last[2], w.end_ms)
            else:
                spans.append((s0, s1, w.start_ms, w.end_ms))
        out = []
        for s0, s1, t0, t1 in spans:
            word = self.shown[s0:s1].strip()
            if word:
                out.append(WordTiming(word, t0, t1))
        return tuple(out)


def speech_text(text: str, language: str) -> str:
    """``text`` as the voice should read it in ``language``: see the module docstring for the ``zh`` rules."""
    return SpeechText.of(text, language).spoken
