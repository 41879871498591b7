"""Mandarin text → Kokoro-82M phonemes, and the pieces a sentence is synthesized in.

Kokoro v1.0 was trained on misaki's *legacy* Mandarin G2P (jieba words → pypinyin tone-3 syllables → IPA with tone
arrows ``→ ↗ ↓ ↘``); :func:`phonemize` calls the same code (``misaki.zh.ZHG2P``), so the model hears what it
learned. It never raises on odd input: digits become Chinese numerals (cn2an, as misaki does), Latin letters are
spelled with their English names, and anything the model has no symbol for is dropped.

Amounts, dates and phone numbers should already be words when they arrive here (Fay's text normalisation runs
before the engine); the numerals fallback only keeps stray digits from being lost.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import numpy as np

#: English letter names in misaki's phoneme set (A, I, O are its diphthong symbols eɪ, aɪ, oʊ)
_LETTERS = {
    "a": "ˈA", "b": "bˈi", "c": "sˈi", "d": "dˈi", "e": "ˈi", "f": "ˈɛf", "g": "ʤˈi", "h": "ˈAʧ", "i": "ˈI",
    "j": "ʤˈA", "k": "kˈA", "l": "ˈɛl", "m": "ˈɛm", "n": "ˈɛn", "o": "ˈO", "p": "pˈi", "q": "kjˈu", "r": "ˈɑɹ",
    "s": "ˈɛs", "t": "tˈi", "u": "jˈu", "v": "vˈi", "w": "dˈʌbᵊlju", "x": "ˈɛks", "y": "wˈI", "z": "zˈi",
}
_DIGITS = "零一二三四五六七八九"
_LATIN = re.compile(r"[A-Za-z]+")
_PIECE_END = re.compile(r"(?<=[，、；：,;:])")
_HAN = re.compile(r"[\u4e00-\u9fff]")
#: the model's limit is 510 tokens with the two pads; a sentence never comes close once split
MAX_TOKENS = 500


def _spell(match: re.Match[str]) -> str:
    return " " + " ".join(_LETTERS[c] for c in match.group(0).lower()) + " "


class Phonemizer:
    """Callable: Mandarin text → a phoneme string in the model's vocabulary (jieba and misaki load on first use)."""

    def __init__(self, vocab: dict[str, int]) -> None:
        self.vocab = vocab
        self._g2p: Any = None

    def __call__(self, text: str) -> str:
        if self._g2p is None:
            from misaki.zh import ZHG2P

            self._g2p = ZHG2P()  # version None: the legacy G2P that Kokoro v1.0 was trained with
        g2p = self._g2p
        text = text.strip()
        if not text:
            return ""
        import cn2an

        with contextlib.suppress(Exception):  # cn2an rejects some digit shapes ("1.2.3"): read digit by digit
            text = cn2an.transform(text, "an2cn")
        text = re.sub(r"\d", lambda m: _DIGITS[int(m.group(0))], text)
        # Latin words are spelled before the G2P, which passes non-Han segments through as they are
        text = _LATIN.sub(_spell, g2p.map_punctuation(text))
        phonemes = g2p.legacy_call(text) if _HAN.search(text) else text
        out = "".join(c for c in phonemes if c in self.vocab)
        return re.sub(r"\s+", " ", out).strip()[:MAX_TOKENS]

    def tokens(self, phonemes: str) -> np.ndarray:
        """The model's input ids for ``phonemes``, with the pad (0) at both ends."""
        return np.array([[0, *(self.vocab[c] for c in phonemes if c in self.vocab), 0]], dtype=np.int64)


def pieces(text: str, max_chars: int, first_chars: int | None = None) -> list[str]:
    """``text`` cut after its commas (，、；：) into pieces of at most about ``max_chars`` characters.

    Short neighbours are merged back (a piece of two characters sounds clipped on its own); a piece still longer
    than its limit is cut between jieba words. The first piece's limit is ``first_chars`` (default ``max_chars``):
    a short first piece is heard sooner. The pieces joined give ``text`` back.
    """
    parts = [p for p in _PIECE_END.split(text) if p]
    merged: list[str] = []
    for part in parts:
        if merged and (len(merged[-1]) < 4 or len(part.strip()) < 4) and len(merged[-1]) + len(part) <= max_chars:
            merged[-1] += part
        else:
            merged.append(part)
    out: list[str] = []
    for part in merged:
        limit = max_chars if out else min(max_chars, first_chars or max_chars)
        if len(part) <= limit:
            out.append(part)
            continue
        import jieba

        cur = ""
        for word in jieba.lcut(part):
            if cur and len(cur) + len(word) > limit:
                out.append(cur)
                cur = ""
                limit = max_chars
            cur += word
        if cur:
            if out and len(cur.strip("，。！？,.!? ")) < 3:
                out[-1] += cur
            else:
                out.append(cur)
    return out
