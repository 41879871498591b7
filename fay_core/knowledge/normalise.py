"""Question normalisation: the way customers type, mapped to the way knowledge is written, before a question is
searched and graded.

What it changes is general, not tied to any knowledge base:

- **Width**: full-width letters, digits and punctuation (``ＡＴＭ``, ``１２``, ``？``) become their ASCII forms
  (Unicode NFKC), as Chinese input methods often type them.
- **Chinese colloquialisms**: 咋 → 怎么, 啥 → 什么, 多长时间 → 多久, 好多钱 → 多少钱, the variant 帐 → 账
  (转帐, 帐户; not 帐篷 or 蚊帐), a question ending in a bare 不 or 没 ("开门不", "到了没") → 吗, and the
  sentence-final particles 啊/呀/哈/呗/嘛 and polite openings (请问, 你好, 麻烦问一下) dropped.
- **English chat shorthand and contractions**: ``u`` → you, ``r`` → are, ``ur`` → your, ``pls`` → please,
  ``acct`` → account, ``wanna`` → want to, ``whats`` → what's, ``ive`` → I've, ``cant`` → can't, and a few more.

Only words written as such are replaced (on word boundaries for English); anything else is left as typed.

:func:`respell` then corrects English typos against the knowledge's own words ("intrest" → interest, "mortage" →
mortgage): a word of 5 letters or more that the knowledge never uses becomes the one knowledge word it is a single
edit (a letter dropped, added, changed, or two swapped) away from; with none or several such words it stays.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from ..text import HAN, HAN_RE

_EN_SHORT = {
    "u": "you", "r": "are", "ur": "your", "ya": "you", "pls": "please", "plz": "please", "thx": "thanks",
    "acct": "account", "accnt": "account", "acc": "account", "wanna": "want to", "gonna": "going to",
    "gotta": "have to", "whats": "what's", "wats": "what's", "wat": "what", "hows": "how's", "wheres": "where's",
    "ive": "I've", "im": "I'm", "dont": "don't", "doesnt": "doesn't", "cant": "can't", "wont": "won't",
    "didnt": "didn't", "isnt": "isn't", "havent": "haven't", "theres": "there's", "thru": "through",
    "b4": "before", "2day": "today", "tmrw": "tomorrow", "bc": "because", "cuz": "because", "coz": "because",
    "txn": "transaction", "xfer": "transfer", "amt": "amount", "info": "information", "govt": "government",
}
_EN_SHORT_RE = re.compile(r"(?<![\w'-])(" + "|".join(sorted(map(re.escape, _EN_SHORT), key=len, reverse=True))
                          + r")(?![\w'-])", re.IGNORECASE)

_ZH_OPENING = re.compile(r"^(?:你好|您好|请问一下|请问|麻烦问一下|麻烦问下|我?想?问一下|我?想?问下)[，,\s]*")
_ZH_REPLACE = (
    (re.compile("咋样"), "怎么样"),
    (re.compile("咋"), "怎么"),
    (re.compile("啥"), "什么"),
    (re.compile("多长时间"), "多久"),
    (re.compile("好多钱"), "多少钱"),
    (re.compile("帐(?!篷)"), "账"),
    (re.compile("蚊账"), "蚊帐"),
)
#: a clause that ends in a bare 不 / 没 (有) asks yes or no: "开门不" is "开门吗"
_ZH_TAG_NEG = re.compile(f"(?<=[{HAN}])(?:不|没有|没)$")
#: A-不-A asks yes or no: "收不收手续费" is "收手续费吗"
_ZH_A_NOT_A = re.compile(f"([{HAN}])不\\1")
_ZH_FINAL = re.compile(f"(?<=[{HAN}])[啊呀哈呗嘛哦]+$")
_ZH_CLAUSE = re.compile("([^？?；;。！!，,]*)([？?；;。！!，,]*)")


def _zh_clause(body: str) -> str:
    body = _ZH_FINAL.sub("", body)
    if len(body) > 2 and _ZH_TAG_NEG.search(body) and not body.endswith(("是不", "要不")):
        return _ZH_TAG_NEG.sub("吗", body)
    asked, n = _ZH_A_NOT_A.subn(r"\1", body)
    if n and asked and not asked.endswith(("吗", "呢")):
        return asked + "吗"
    return body


def normalise(question: str) -> str:
    """``question`` as the knowledge would write it (see the module docstring)."""
    text = unicodedata.normalize("NFKC", question).strip()
    if HAN_RE.search(text):
        text = _ZH_OPENING.sub("", text)
        for rx, new in _ZH_REPLACE:
            text = rx.sub(new, text)
        text = "".join(_zh_clause(body) + punct for body, punct in _ZH_CLAUSE.findall(text))
    return _EN_SHORT_RE.sub(lambda m: _EN_SHORT[m.group(1).lower()], text)


_LATIN_WORD = re.compile(r"[A-Za-z]{5,}")
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


@lru_cache(maxsize=16)
def vocabulary(knowledge_text: str) -> frozenset[str]:
    """The lower-cased English words of ``knowledge_text``."""
    return frozenset(w.lower() for w in re.findall(r"[A-Za-z]+", knowledge_text))


def _edits(word: str) -> set[str]:
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    return ({a + b[1:] for a, b in splits if b}
            | {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
            | {a + c + b[1:] for a, b in splits if b for c in _LETTERS}
            | {a + c + b for a, b in splits for c in _LETTERS})


def respell(text: str, vocabulary: frozenset[str]) -> str:
    """``text`` with each English word the knowledge never uses replaced by the single knowledge word one edit away,
    when there is exactly one (see the module docstring)."""
    def fix(m: re.Match[str]) -> str:
        word = m.group(0)
        low = word.lower()
        if low in vocabulary:
            return word
        near = [w for w in _edits(low) if w in vocabulary and w != low]
        return near[0] if len(near) == 1 else word

    return _LATIN_WORD.sub(fix, text)
