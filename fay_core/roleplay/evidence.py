"""Finding a rubric's ``checks`` and ``avoid`` phrases in what the trainee said, with a verbatim quote.

Offline, with no LLM: each phrase is compared with every *span* of every trainee turn (each sentence, each two
adjacent sentences, and the whole turn), and the best span is its evidence. A span's score is

    score = (cos(phrase, span) - baseline(phrase)) + LEXICAL_WEIGHT * lexical(phrase, span) - negation

- ``cos`` is the cosine of the two texts embedded by the knowledge base's embedder (multilingual e5: the phrase
  as a query, the span as a passage, as the knowledge base searches; on the tune set this beat embedding both as
  queries, F1 0.84 against 0.79), so a check written in English still finds its Chinese answer (less often:
  see the bench's cross-language line).
- ``baseline`` is the phrase's mean cosine with a few neutral sentences (:data:`NEUTRAL`, English and Chinese).
  e5's cosines crowd into 0.75-0.9 and some phrases sit high against everything; subtracting a phrase's own
  baseline makes one threshold fit all phrases.
- ``lexical`` is the share of the phrase's content tokens found in the span: English words (lower-cased, stop
  words out, crudely stemmed) and Chinese character bigrams.
- ``negation``: :data:`NEGATION_PENALTY` when the span negates ("never", "can't", 不, 没有...) and the phrase does
  not, meant to keep "I can't promise that" from matching the avoid phrase "I guarantee ...". The tune set chose
  0 (it cost more true checks than it saved false ones), so it is off; the knob stays for other rubrics.

A phrase is found when its best score reaches :data:`CHECK_THRESHOLD` (checks) or :data:`AVOID_THRESHOLD`
(avoid phrases: a false violation costs the trainee points, so that one is set for precision).

**Calibration.** The three constants were chosen by ``python bench/roleplay.py --tune`` on the tune set of
``bench/data/roleplay/`` (transcripts written for this: good, medium and poor trainees, interview and sales,
English and Chinese, every check and avoid phrase labelled by hand): a grid over the lexical weight and the
thresholds, keeping the pair with the best F1 of check detection. The report set, written separately, is only
scored with the chosen constants (see ``bench/results/roleplay.json``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..engines import EmbedsQueries
from ..text import HAN
from .transcript import Transcript

#: weight of the lexical overlap (0-1) beside the baseline-corrected cosine
LEXICAL_WEIGHT = 0.05
#: a check is found at or above this score
CHECK_THRESHOLD = 0.115
#: an avoid phrase is violated at or above this score
AVOID_THRESHOLD = 0.1325
#: subtracted when the span negates and the phrase does not
NEGATION_PENALTY = 0.0

#: sentences that say nothing in particular: each phrase's baseline is its mean cosine with them
NEUTRAL = (
    "Okay, thank you.",
    "I see, that sounds fine.",
    "Could you repeat the question, please?",
    "The weather has been nice this week.",
    "I am not sure what to say about that.",
    "Let me think for a moment.",
    "好的，谢谢。",
    "嗯，我明白了。",
    "您能再说一遍吗？",
    "今天天气不错。",
)

_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|(?<=[。！？；…])")
_EN_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_HAN_RUN = re.compile(f"[{HAN}]+")
_STOP = frozenset(
    "a an the is are was were be been being do does did i you me my your we our us it its to of for in on at by and "  # noqa: SIM905
    "or what how can could would should will with from this that there as if so have has had get any he she they "
    "them his her their about into than then just also very really some more most all am i'm i've you're it's "
    "that's one we'll".split()
)
_ZH_STOP_BIGRAMS = frozenset({"我们", "你们", "他们", "这个", "那个", "就是", "一下", "什么", "可以", "的时"})
_NEGATION = re.compile(r"\b(?:not|never|no|cannot|can't|won't|don't|doesn't|didn't|isn't|aren't|wouldn't)\b|"
                       r"[不没无别]|未", re.IGNORECASE)


@dataclass(frozen=True)
class Span:
    """A piece of one trainee turn, verbatim: the quote a match gives as evidence."""

    turn: int
    text: str


@dataclass(frozen=True)
class Match:
    """A phrase's best span: ``found`` when ``score`` reached the threshold for its kind."""

    phrase: str
    found: bool
    score: float | None
    turn: int | None
    quote: str | None


def spans(transcript: Transcript) -> list[Span]:
    """Every sentence, pair of adjacent sentences and whole turn of the trainee's turns, each once."""
    out: list[Span] = []
    for i, turn in transcript.of("trainee"):
        sentences = [s.strip() for s in _SENTENCE_END.split(turn.text) if s.strip()]
        seen: set[str] = set()
        pieces = list(sentences)
        pieces += [_between(turn.text, a, b) for a, b in zip(sentences, sentences[1:], strict=False)]
        pieces.append(turn.text.strip())
        for piece in pieces:
            if piece and piece not in seen:
                seen.add(piece)
                out.append(Span(i, piece))
    return out


def _between(text: str, first: str, last: str) -> str:
    """The verbatim text from ``first`` to the end of ``last`` (both occur in ``text`` in that order)."""
    start = text.find(first)
    end = text.find(last, start + len(first))
    return text[start:end + len(last)] if start >= 0 and end >= 0 else first


def content_tokens(text: str) -> set[str]:
    """English content words (stemmed) and Chinese bigrams of ``text``: the lexical signal's tokens."""
    low = text.lower()
    out = {_stem(w) for w in _EN_WORD.findall(low) if w not in _STOP and len(w) > 1}
    for run in _HAN_RUN.findall(text):
        out.update(a + b for a, b in zip(run, run[1:], strict=False) if a + b not in _ZH_STOP_BIGRAMS)
    return out


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "ly", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def lexical(phrase_tokens: set[str], span_tokens: set[str]) -> float:
    """The share of the phrase's tokens in the span (0 when the phrase has none)."""
    return len(phrase_tokens & span_tokens) / len(phrase_tokens) if phrase_tokens else 0.0


def negates(text: str) -> bool:
    return bool(_NEGATION.search(text))


class EvidenceMatcher:
    """Matches phrases to a transcript's trainee spans (see the module docstring). Thread-safe if the embedder is.

    ``embedder`` is a knowledge-base embedder (:class:`fay_core.engines.Embedder`); the neutral baseline is embedded
    on first use and kept.
    """

    def __init__(self, embedder: Any, *, lexical_weight: float = LEXICAL_WEIGHT,
                 check_threshold: float = CHECK_THRESHOLD, avoid_threshold: float = AVOID_THRESHOLD,
                 negation_penalty: float = NEGATION_PENALTY) -> None:
        self.embedder = embedder
        self.lexical_weight = lexical_weight
        self.check_threshold = check_threshold
        self.avoid_threshold = avoid_threshold
        self.negation_penalty = negation_penalty
        self._neutral: np.ndarray | None = None

    def embed(self, texts: Sequence[str], *, passages: bool = False) -> np.ndarray:
        """Rows of L2-normalised vectors, ``texts`` embedded as queries (or as ``passages``)."""
        if not texts:
            return np.zeros((0, int(getattr(self.embedder, "dim", 1))), np.float32)
        if passages:
            vecs: Any = self.embedder.embed_documents(list(texts))
        elif isinstance(self.embedder, EmbedsQueries):
            vecs = self.embedder.embed_queries(list(texts))
        else:
            vecs = [self.embedder.embed_query(t) for t in texts]
        arr = np.asarray(vecs, dtype=np.float32)
        return arr / np.maximum(np.linalg.norm(arr, axis=1, keepdims=True), 1e-12)

    def raw_scores(self, phrases: Sequence[str], transcript: Transcript) -> tuple[list[Span], np.ndarray]:
        """The spans and a ``(phrases, spans, 3)`` array of (baseline-corrected cosine, lexical, negation 0/1),
        for the scorer and for calibration."""
        found_spans = spans(transcript)
        if self._neutral is None:
            self._neutral = self.embed(NEUTRAL, passages=True)
        if not phrases or not found_spans:
            return found_spans, np.zeros((len(phrases), len(found_spans), 3), np.float32)
        p = self.embed(phrases)
        s = self.embed([sp.text for sp in found_spans], passages=True)
        cos = p @ s.T - (p @ self._neutral.T).mean(axis=1, keepdims=True)
        ptoks = [content_tokens(x) for x in phrases]
        stoks = [content_tokens(sp.text) for sp in found_spans]
        lex = np.array([[lexical(pt, st) for st in stoks] for pt in ptoks], np.float32)
        pneg = [negates(x) for x in phrases]
        sneg = [negates(sp.text) for sp in found_spans]
        neg = np.array([[float(sn and not pn) for sn in sneg] for pn in pneg], np.float32)
        return found_spans, np.stack([cos, lex, neg], axis=-1)

    def combine(self, raw: np.ndarray) -> np.ndarray:
        """The scores of :meth:`raw_scores`' features."""
        return raw[..., 0] + self.lexical_weight * raw[..., 1] - self.negation_penalty * raw[..., 2]

    def match(self, checks: Sequence[str], avoid: Sequence[str], transcript: Transcript
              ) -> tuple[list[Match], list[Match]]:
        """The best span of each check and of each avoid phrase (blocking: embeds; run it in a thread)."""
        phrases = [*checks, *avoid]
        found_spans, raw = self.raw_scores(phrases, transcript)
        scores = self.combine(raw)
        out = []
        for k, phrase in enumerate(phrases):
            threshold = self.check_threshold if k < len(checks) else self.avoid_threshold
            if not found_spans:
                out.append(Match(phrase, False, None, None, None))
                continue
            j = int(np.argmax(scores[k]))
            score = float(scores[k, j])
            found = score >= threshold
            out.append(Match(phrase, found, round(score, 4), found_spans[j].turn if found else None,
                             found_spans[j].text if found else None))
        return out[: len(checks)], out[len(checks):]
