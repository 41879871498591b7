"""Transcription accuracy: word and character edit distances, as used by the tests and ``bench/voice.py``."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence


def words(text: str) -> list[str]:
    """Lower-case words of ``text`` without punctuation (hyphens split words)."""
    return re.sub(r"[^a-z0-9' ]", " ", text.lower().replace("-", " ")).split()


def edits(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Levenshtein distance between two token sequences (words, or characters for Chinese)."""
    d = list(range(len(hyp) + 1))
    for i in range(1, len(ref) + 1):
        prev, d[0] = d[:], i
        for j in range(1, len(hyp) + 1):
            d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (ref[i - 1] != hyp[j - 1]))
    return d[len(hyp)]


def word_error_rate(pairs: Sequence[tuple[str, str]]) -> float:
    """Word error rate over ``(reference, hypothesis)`` pairs: total word edits / total reference words."""
    return sum(edits(words(r), words(h)) for r, h in pairs) / sum(len(words(r)) for r, _ in pairs)


def han(text: str) -> list[str]:
    """The Chinese characters of ``text`` (what a character error rate counts; punctuation and spaces dropped)."""
    return [c for c in text if "\u4e00" <= c <= "\u9fff"]


def fold_zh(text: str) -> str:
    """A Mandarin transcript folded for comparison: traditional characters to simplified, Arabic digits to
    Chinese numerals (whisper writes ``9点`` and ``營業`` where the reference says ``九点``, ``营业``).

    Uses misaki's conversion table and cn2an (both in the ``offline`` extra).
    """
    import cn2an
    from misaki.zh_normalization.char_convert import tranditional_to_simplified

    with contextlib.suppress(Exception):  # digit shapes cn2an rejects stay as they are (and count as errors)
        text = cn2an.transform(text, "an2cn")
    return tranditional_to_simplified(text).replace("麽", "么").replace("麼", "么")  # not in misaki's table


def character_error_rate(pairs: Sequence[tuple[str, str]]) -> float:
    """Character error rate over ``(reference, hypothesis)`` pairs of Chinese text: total character edits of the
    hypotheses (folded with :func:`fold_zh`) / total reference characters."""
    return sum(edits(han(r), han(fold_zh(h))) for r, h in pairs) / max(1, sum(len(han(r)) for r, _ in pairs))
