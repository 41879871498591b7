"""Answerability: whether the knowledge answers a question, graded, part by part.

Search ranks entries; this module decides what the ranking is worth for the question asked:

- **Parts**: a question that asks two things ("When do you close on Fridays, and do I need an appointment to open
  an account?") is split at its question boundaries (:func:`split_parts`); the split is kept when its parts find
  different entries, so each part is answered with its own source.
- **Entity checks** make "found" false whatever the similarity: a question naming a company the knowledge never
  mentions (another bank, a payment app) is about that company; one naming a kind of product the knowledge never
  mentions (a car loan, a gold card, shares) asks for something the bank does not sell. The names are general
  lists (``entities.yaml`` beside this module) plus ``knowledge.foreign_names`` / ``knowledge.not_offered``.
  A term the question asks for (a 5-year deposit) rules out entries about other terms (the 3-year one).
- **Grades**: ``answer`` when the best remaining hit's confidence reaches ``min_score`` (or it names the exact
  product code asked for); ``uncertain`` from ``suggest_score`` up (an LLM decides from the top sources, with an
  explicit "not in the sources" exit; offline the best candidate is offered as a suggestion with a check
  question); ``decline`` below.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml

from ..text import HAN, HAN_RE
from .documents import Hit
from .keyword import tokens
from .normalise import normalise, respell, vocabulary

Verdict = Literal["answer", "uncertain", "decline"]

_ENTITIES = Path(__file__).with_name("entities.yaml")


@dataclass(frozen=True)
class Part:
    """One question of a message, its candidate entries (best first) and the verdict on the best."""

    question: str
    hits: tuple[Hit, ...]
    verdict: Verdict
    reason: str = ""  # why it is uncertain or declined, for logs and reviews

    @property
    def best(self) -> Hit | None:
        return self.hits[0] if self.hits else None


@dataclass(frozen=True)
class Assessment:
    """What the knowledge answers of a message: one :class:`Part` per question it asks."""

    question: str
    parts: tuple[Part, ...] = field(default_factory=tuple)

    @property
    def verdict(self) -> Verdict:
        """``answer`` when a part is answered, else ``uncertain`` when one is, else ``decline``."""
        verdicts = {p.verdict for p in self.parts}
        return "answer" if "answer" in verdicts else "uncertain" if "uncertain" in verdicts else "decline"

    def sources(self, verdicts: Sequence[Verdict] = ("answer",)) -> list[Hit]:
        """The best hit of each part with one of ``verdicts``, without repeats, in the parts' order."""
        out: list[Hit] = []
        for p in self.parts:
            if p.verdict in verdicts and p.best is not None and all(h.id != p.best.id for h in out):
                out.append(p.best)
        return out


# --- names ------------------------------------------------------------------------------------------------


class Names:
    """Patterns of names (companies, kinds of product); :meth:`absent_in` says which a question names that a
    collection's text never mentions."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = [compile_name(p) for p in dict.fromkeys(p.strip() for p in patterns) if p]

    def named(self, text: str) -> list[str]:
        """The names ``text`` contains, as written there."""
        out = []
        for rx in self.patterns:
            m = rx.search(text)
            if m:
                out.append(m.group(0))
        return out

    def absent_in(self, question: str, knowledge_text: str) -> list[str]:
        """Names in ``question`` whose pattern matches nowhere in ``knowledge_text``."""
        return [m.group(0) for rx in self.patterns
                if (m := rx.search(question)) is not None and rx.search(knowledge_text) is None]


def compile_name(pattern: str) -> re.Pattern[str]:
    """A name pattern: on word boundaries for Latin text, as written for Chinese; case-insensitive."""
    if HAN_RE.search(pattern):
        return re.compile(pattern, re.IGNORECASE)
    return re.compile(rf"(?<![\w-]){pattern}(?![\w-])", re.IGNORECASE)


@lru_cache(maxsize=1)
def builtin_names() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The shipped lists: ``(banks, products)`` (see ``entities.yaml``)."""
    data = yaml.safe_load(_ENTITIES.read_text(encoding="utf-8")) or {}
    return tuple(str(x) for x in data.get("banks") or ()), tuple(str(x) for x in data.get("products") or ())


# --- terms ------------------------------------------------------------------------------------------------

_NUM_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
              "ten": 10, "twelve": 12, "eighteen": 18, "twenty": 20, "twenty-four": 24, "thirty": 30,
              "thirty-six": 36}
_ZH_DIGITS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}
_EN_TERM = re.compile(r"(?<![\w.,])(\d{1,3}|" + "|".join(sorted(_NUM_WORDS, key=len, reverse=True))
                      + r")[- ]?(years?|yrs?|months?|mos?)(?![a-z])", re.IGNORECASE)
_ZH_TERM = re.compile(r"(半)年|([\d一二两三四五六七八九十]{1,3})(个月|年期|年)")


def terms(text: str) -> set[int]:
    """Deposit or loan terms that ``text`` names, in months ("3-year" → 36, "十二个月" → 12, "半年" → 6)."""
    out: set[int] = set()
    for num, unit in _EN_TERM.findall(text):
        n = int(num) if num.isdigit() else _NUM_WORDS[num.lower()]
        out.add(n * 12 if unit.lower().startswith("y") else n)
    for half, num, unit in _ZH_TERM.findall(text):
        if half:
            out.add(6)
            continue
        n = int(num) if num.isdigit() else _zh_number(num)
        if n:
            out.add(n if unit == "个月" else n * 12)
    return out


def _zh_number(text: str) -> int:
    """一 → 1, 十二 → 12, 二十四 → 24, 三十六 → 36 (up to 99)."""
    if "十" not in text:
        return _ZH_DIGITS.get(text, 0) if len(text) == 1 else 0
    tens, _, ones = text.partition("十")
    return (_ZH_DIGITS.get(tens, 0) if tens else 1) * 10 + (_ZH_DIGITS.get(ones, 0) if ones else 0)


def term_mismatch(question_terms: set[int], hit: Hit) -> bool:
    """The question asks for a term and the entry is about other terms only."""
    if not question_terms:
        return False
    entry = hit.entry
    held = terms(f"{entry.title}\n{entry.section}\n{entry.text}\n" + "\n".join(entry.questions))
    return bool(held) and not held & question_terms


# --- lexical coverage ---------------------------------------------------------------------------------------

#: words that say how a question is asked, not what about
_ASKING = frozenset("""much many long does doing get got need want like know tell please pay paying cost costs any
also then there here you your yours do i me my mine we our us can could would should will is are was am be been
much when where why which who whom whose how what much very really just about into out up off over per each every
""".split())  # noqa: SIM905


#: Chinese character pairs that only ask or address ("你们的账户每个月收钱吗": 你们, 们的 say nothing of the subject)
_ZH_ASKING = frozenset("你们 我们 们的 什么 怎么 多少 可以 能不 不能 是不 不是 请问 一下 要不 不要 会不 不会".split())  # noqa: SIM905
#: particles and pronouns: a character pair with one of them is grammar, not subject (the keyword index's stop list)
_ZH_PARTICLES = frozenset("的了吗呢吧啊我你您是在有和就都也")


def _stem(token: str) -> str:
    """A crude English stem: plural -s, and -en/-ed/-ing on longer words (stolen, stole → stol)."""
    if len(token) > 3 and token.endswith("s") and not token.endswith("ss"):
        token = token[:-1]
    for suffix in ("ing", "en", "ed", "e"):
        if len(token) > len(suffix) + 3 and token.endswith(suffix):
            return token[: -len(suffix)]
    return token


def content_tokens(text: str) -> set[str]:
    """The keyword tokens of ``text`` that carry its subject (English words stemmed crudely, Chinese characters and
    character pairs), without the words that only ask."""
    out = set()
    for t in tokens(text):
        if t in _ASKING or t in _ZH_ASKING or t.isdigit():
            continue
        if len(t) == 2 and HAN_RE.match(t) and (t[0] in _ZH_PARTICLES or t[1] in _ZH_PARTICLES):
            continue  # a pair with a particle or a pronoun in it: 的账, 钱吗
        out.add(_stem(t))
    return out


def coverage(question: set[str], hit: Hit) -> float:
    """Share of the question's content tokens found in the entry (its title, phrasings, section and text)."""
    if not question:
        return 0.0
    e = hit.entry
    held = content_tokens(f"{e.title} {e.section} {e.text} {' '.join(e.questions)}")
    return len(question & held) / len(question)


# --- parts ------------------------------------------------------------------------------------------------

_EN_JOIN = re.compile(r"(?:[?;]|,?\s+(?:and|also|plus)\s+(?:also\s+)?|,\s*(?:also|and)?\s*|\.\s+(?:also|and)\s*,?\s*)"
                      r"(?=(?:also\s+|then\s+)?(?:how|what|when|where|why|which|who|is|are|do|does|can|could|will|"
                      r"would|should|i|my)\b)", re.IGNORECASE)
_ZH_JOIN = re.compile(f"[？?；;](?=.)|[，,。](?=(?:另外|还有|以及|再问|顺便|那)?[{HAN}A-Za-z])")


#: Chinese characters that ask, point or hedge rather than name a subject (多久到: only 到 names anything)
_ZH_FUNCTION = frozenset("多少久什么怎吗呢能要可以会几哪谁为是不没有还请问我你您的了吧啊呀就都也再又得该需")


def elliptical(part: str) -> bool:
    """``part`` names no subject of its own ("what's the charge", "要收钱吗"): at most one content word, or, in
    Chinese, at most two characters that are not function characters."""
    if HAN_RE.search(part):
        return sum(1 for c in part if HAN_RE.match(c) and c not in _ZH_FUNCTION) <= 2
    return sum(1 for t in content_tokens(part) if len(t) > 1) <= 1


def split_parts(question: str) -> list[str]:
    """The questions a message may ask, split at question marks and at joins before a new question ("..., and
    do I need ...", "……？另外……"). One part when there is nothing to split; parts of under 3 characters are
    merged back."""
    text = question.strip()
    pattern = _ZH_JOIN if HAN_RE.search(text) else _EN_JOIN
    pieces = [p.strip(" ,，。;；") for p in pattern.split(text)]
    pieces = [re.sub(r"^(?:另外|还有|以及|再问一下|顺便问一下|also|and|plus|then)[,，\s]*", "", p, flags=re.IGNORECASE)
              for p in pieces]
    out: list[str] = []
    for p in pieces:
        if len(p) < 3 and out:
            out[-1] = f"{out[-1]} {p}".strip()
        elif p:
            out.append(p)
    return out or [text]


# --- the assessor -----------------------------------------------------------------------------------------

Search = Callable[[str], list[Hit]]


@dataclass
class Assessor:
    """Grades a message's parts against a persona's collections (see the module docstring).

    ``search`` returns ranked hits for a text; ``knowledge_text`` the lower-cased text of the collections (for the
    entity checks); ``min_score`` and ``suggest_score`` bound the grades.
    """

    search: Search
    knowledge_text: Callable[[], str]
    min_score: float
    suggest_score: float
    names: Names = field(default_factory=lambda: Names(builtin_names()[0] + builtin_names()[1]))
    max_parts: int = 3
    #: how much the share of the question's words found in an entry moves its score (0: the ranking as it is)
    coverage_weight: float = 0.0
    #: added to a document chunk's confidence when its passage matched: query-to-passage cosines run lower than
    #: query-to-question ones
    passage_offset: float = 0.0

    def score(self, hit: Hit, words: set[str]) -> float:
        """The confidence the grades compare: the hit's, calibrated for passages, moved by lexical coverage."""
        passage = hit.entry.kind == "chunk" and hit.matched not in hit.entry.questions  # not one of its phrasings
        offset = self.passage_offset if passage else 0.0
        return hit.confidence + offset + self.coverage_weight * (coverage(words, hit) - 0.5)

    def assess(self, question: str) -> Assessment:
        asked, question = question, normalise(question)  # as the knowledge would write it: 咋 → 怎么, u → you
        words = vocabulary(self.knowledge_text())
        # typos are corrected for the search only: the entity checks read the words as typed
        whole = self.part(question, self.search(respell(question, words)))
        pieces = split_parts(question)[: self.max_parts]
        if len(pieces) < 2 or whole.verdict == "decline" and whole.reason.startswith("names"):
            return Assessment(asked, (whole,))
        parts = []
        for i, p in enumerate(pieces):
            # an elliptical follow-up ("..., what's the charge?", "……，要收钱吗") asks about the previous part's subject
            text = f"{pieces[i - 1]} {p}" if i and elliptical(p) else p
            parts.append(self.part(p, self.search(respell(text, words))))
        found = [p for p in parts if p.verdict != "decline" and p.best is not None]
        distinct = {p.best.id for p in found if p.best is not None}
        if len(distinct) < 2:
            return Assessment(asked, (whole,))
        return Assessment(asked, tuple(parts))

    def part(self, question: str, hits: list[Hit]) -> Part:
        absent = self.names.absent_in(question, self.knowledge_text())
        if absent:
            return Part(question, tuple(hits), "decline", f"names {', '.join(absent)}, which the knowledge does not")
        wanted = terms(question)
        kept = [h for h in hits if not term_mismatch(wanted, h)]
        if hits and not kept:
            return Part(question, tuple(hits), "decline", "asks for a term no entry offers")
        if not kept:
            return Part(question, (), "decline", "nothing retrieved")
        words = content_tokens(question)
        scored = sorted(((self.score(h, words), h) for h in kept), key=lambda x: (x[1].exact, x[0]), reverse=True)
        kept = [h for _, h in scored]
        top, best = scored[0]
        if best.exact or top >= self.min_score:
            return Part(question, tuple(kept), "answer")
        if top >= self.suggest_score:
            return Part(question, tuple(kept), "uncertain", f"score {top:.3f} below {self.min_score}")
        return Part(question, tuple(kept), "decline", f"score {top:.3f} below {self.suggest_score}")
