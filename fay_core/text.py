"""What every language-aware part of Fay agrees on: which characters are Chinese, and what a word is.

Two character classes, one definition each:

- **Han** (:data:`HAN`, :func:`is_han`): the CJK ideographs, U+3400–U+9FFF (Extension A and the unified block)
  and U+F900–U+FAFF (compatibility ideographs). A Han character is a word of its own: for barge-in word counts,
  speech timings, keyword tokens and language detection.
- **Wide** (:func:`is_wide`): Han plus the CJK symbols, punctuation, kana and the other East Asian blocks of
  U+3000–U+9FFF, and the full-width forms U+FF00–U+FFEF. Wide text is written without spaces: pieces of it are
  joined without one (:func:`join`), and a sentence may end right before one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: the Han ideographs, as the body of a regular-expression character class (``f"[{HAN}]"``)
HAN = "\u3400-\u9fff\uf900-\ufaff"
HAN_RE = re.compile(f"[{HAN}]")
_WORD = re.compile(f"[{HAN}]|[A-Za-z0-9']+(?:-[A-Za-z0-9']+)*")


def is_han(ch: str) -> bool:
    """``ch`` is a CJK ideograph."""
    return "\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff"


def is_wide(ch: str) -> bool:
    """``ch`` belongs to East Asian text written without spaces (ideographs, CJK punctuation, full-width forms)."""
    return "\u3000" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" or "\uff00" <= ch <= "\uffef"


def han_count(text: str) -> int:
    """How many Han characters ``text`` holds."""
    return len(HAN_RE.findall(text))


def words(text: str) -> list[str]:
    """The words of ``text``: each Han character, and each run of Latin letters, digits and apostrophes."""
    return _WORD.findall(text)


def join(parts: Iterable[str]) -> str:
    """Join pieces of text with a space, except where either side of the join is wide (Chinese) text."""
    out = ""
    for part in parts:
        if not part:
            continue
        if out and not (is_wide(out[-1]) or is_wide(part[0])):
            out += " "
        out += part
    return out
