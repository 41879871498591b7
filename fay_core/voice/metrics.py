"""Transcription accuracy: word and character edit distances, as used by the tests and ``bench/voice.py``."""

from __future__ import annotations

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
