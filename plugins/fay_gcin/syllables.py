"""Mandarin text → the recorded syllables that say it, clause by clause.

gcin-voice names each recording by its zhuyin (bopomofo) spelling and a tone digit: ``ㄅㄢ4`` (bàn), ``ㄇㄚ``
(mā: first tone, no digit), ``ㄉㄜ1`` (de: the neutral tone is ``1``). pypinyin gives the zhuyin of each character
in its phrase (多音字 from its phrase dictionary: 银行 háng, 行走 xíng) with the tone sandhi of 一, 不 and
third tones; jieba's words decide where the short pauses between words go.

It never raises on odd input: digits are read one by one (Fay's text normalisation has already turned amounts,
dates and phone numbers into words), Latin letters with the names Chinese speakers give them (``ATM`` → 诶 踢
艾姆), and anything else is a pause or nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

#: zhuyin tone marks → gcin-voice's tone digits ('' is the first tone, 1 the neutral one)
_TONE_DIGIT = {"ˊ": "2", "ˇ": "3", "ˋ": "4", "˙": "1"}
#: when a syllable was not recorded in its tone, the nearest ones, in order
_NEAREST = {"": ("4", "2", "3", "1"), "1": ("", "4", "3", "2"), "2": ("3", "", "4", "1"),
            "3": ("2", "4", "", "1"), "4": ("", "2", "3", "1")}
_DIGITS = dict(zip("0123456789", ["ㄌㄧㄥ2", "ㄧ", "ㄦ4", "ㄙㄢ", "ㄙ4", "ㄨ3", "ㄌㄧㄡ4", "ㄑㄧ", "ㄅㄚ", "ㄐㄧㄡ3"],
                   strict=True))
#: English letter names as Chinese speakers say them (A 诶, B 必, C 西 …; ēi was not recorded: A is è)
_LETTERS = {
    "a": "ㄝ4", "b": "ㄅㄧ4", "c": "ㄒㄧ", "d": "ㄉㄧ4", "e": "ㄧ", "f": "ㄞ ㄈㄨ1", "g": "ㄐㄧ4", "h": "ㄝ4 ㄑㄧ1",
    "i": "ㄞ4", "j": "ㄐㄧㄝ2", "k": "ㄎㄞ4", "l": "ㄞ ㄌㄜ1", "m": "ㄞ ㄇㄨ3", "n": "ㄣ", "o": "ㄡ", "p": "ㄆㄧ",
    "q": "ㄎㄡ", "r": "ㄚ ㄦ3", "s": "ㄞ ㄙ1", "t": "ㄊㄧ", "u": "ㄧㄡ", "v": "ㄨㄟ", "w": "ㄉㄚ2 ㄅㄨ1 ㄌㄧㄡ2",
    "x": "ㄞ ㄎㄜ4 ㄙ1", "y": "ㄨㄞ", "z": "ㄗㄟ4",
}
_HAN_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]+")
_LATIN_OR_DIGIT = re.compile(r"[A-Za-z]+|[0-9]")
_TRAILING = re.compile(r"[^\w\s\u3400-\u4dbf\u4e00-\u9fff]+")
_CLAUSE = re.compile(r".+?(?:[，。！？、；：,.!?;:…]+|$)", re.S)
_SENTENCE_END = "。！？.!?…"
_COMMA = "，、；：,;:"


@dataclass(frozen=True)
class Token:
    """A character (or Latin word) of a clause, the units that say it, and whether a word ends after it."""

    text: str
    units: tuple[str, ...]
    word_end: bool


def clauses(text: str) -> list[str]:
    """``text`` cut after each run of punctuation (each clause keeps its punctuation)."""
    return [c for c in _CLAUSE.findall(text) if c.strip()]


def pause_after(clause: str) -> float:
    """Seconds of silence after a clause: a sentence end 0.3, a comma 0.2, else 0."""
    last = clause.rstrip()[-1:]
    return 0.3 if last in _SENTENCE_END else 0.2 if last in _COMMA else 0.0


def unit_key(zhuyin: str) -> str:
    """pypinyin's zhuyin (``ㄅㄢˋ``) → gcin-voice's folder name (``ㄅㄢ4``)."""
    digit = ""
    for mark, d in _TONE_DIGIT.items():
        if mark in zhuyin:
            digit, zhuyin = d, zhuyin.replace(mark, "")
    return zhuyin + digit


def split_key(key: str) -> tuple[str, str]:
    """``ㄅㄢ4`` → (``ㄅㄢ``, ``4``)."""
    return (key[:-1], key[-1]) if key[-1:].isdigit() else (key, "")


def fallbacks(key: str) -> Iterator[str]:
    """``key`` and the same syllable in its nearest tones."""
    base, tone = split_key(key)
    yield key
    for t in _NEAREST.get(tone, ()):
        yield base + t


class Reader:
    """Callable: a clause → its tokens (jieba and pypinyin's dictionaries load on first use)."""

    def __init__(self) -> None:
        import jieba
        from pypinyin import Style, lazy_pinyin

        jieba.setLogLevel(60)
        self._cut = jieba.lcut
        self._pinyin = lambda s: lazy_pinyin(s, style=Style.BOPOMOFO, tone_sandhi=True, errors="ignore")

    def __call__(self, clause: str) -> list[Token]:
        spans: list[tuple[int, int, tuple[str, ...], bool]] = []  # start, end, units, word end
        pos = 0
        for m in _HAN_RUN.finditer(clause):
            spans.extend(_other(clause, pos, m.start()))
            run = m.group(0)
            readings = self._pinyin(run)
            if len(readings) != len(run):  # not one reading per character: read each one alone
                readings = [next(iter(self._pinyin(c)), "") for c in run]
            ends: set[int] = set()
            at = 0
            for word in self._cut(run):
                at += len(word)
                ends.add(at - 1)
            for i, zy in enumerate(readings):
                spans.append((m.start() + i, m.start() + i + 1, (unit_key(zy),) if zy else (), i in ends))
            pos = m.end()
        spans.extend(_other(clause, pos, len(clause)))
        out = []
        for start, end, units, word_end in spans:
            tail = _TRAILING.match(clause, end)  # a word keeps the punctuation after it, as Fay's timings do
            out.append(Token(clause[start : tail.end() if tail else end], units, word_end))
        return out


def _other(text: str, start: int, end: int) -> Iterator[tuple[int, int, tuple[str, ...], bool]]:
    """Digits one by one, Latin words spelled, punctuation and spaces: nothing."""
    for m in _LATIN_OR_DIGIT.finditer(text, start, end):
        word = m.group(0)
        units = (_DIGITS[word],) if word.isdigit() else tuple(u for c in word.lower() for u in _LETTERS[c].split())
        yield m.start(), m.end(), units, True
