"""Scoring a role-play transcript on its persona's rubric, with evidence quoted from what the trainee said.

``await score_transcript(persona, transcript, embedder=...)`` gives a :class:`Scorecard`; its :meth:`to_dict` is
the JSON of ``fay roleplay score --json``::

    {"criteria": [{"criterion": "Empathy", "score": 6.7, "max_score": 10, "weight": 1.5, "method": "offline",
                   "checks": [{"check": "...", "found": true, "turn": 3, "quote": "...", "similarity": 0.09}],
                   "violations": [{"avoid": "...", "turn": 5, "quote": "..."}], "reasoning": "...", "note": null}],
     "metrics": {...}, "total": 71.4, "max_total": 100, "method": "offline", "note": null}

``turn`` is the index into ``transcript.turns``; every quote is verbatim text of that trainee turn.

**How a criterion is scored** (offline; the LLM judge follows the same rule for its checks, see
:mod:`.judge`). Each criterion is out of :data:`MAX_SCORE` (10)::

    score = MAX_SCORE * found / len(checks) - VIOLATION_PENALTY * violations,   floored at 0

A criterion with only ``avoid`` phrases starts at ``MAX_SCORE`` and loses the penalty per violation. A criterion
with neither (only a description) cannot be scored offline: its ``score`` is ``null`` with a note, and it is left
out of the total (an LLM judge scores it from its description). ``total`` is the weighted mean of the scored
criteria on a 0-100 scale (``weight`` from the rubric). A persona with no rubric gives a scorecard with no
criteria, ``total`` ``null`` and a note saying so: the metrics and the transcript are still worth keeping, and
the CLI turns it into an error.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..persona import Persona, RubricItem
from .evidence import EvidenceMatcher, Match
from .metrics import speech_metrics
from .transcript import Transcript

if TYPE_CHECKING:
    from ..brain.llm import LLMConfig

#: every criterion is scored out of this
MAX_SCORE = 10.0
#: points lost per violated avoid phrase
VIOLATION_PENALTY = 3.0
NO_RUBRIC = ("this persona has no scenario.rubric: nothing to score (add criteria with checks and avoid phrases to "
             "its scenario)")
NO_CHECKS = "no checks or avoid phrases: not scored offline (add checks, or configure an LLM judge)"


@dataclass
class CheckResult:
    """One check: ``found`` with the trainee ``turn`` (index into the transcript) and a verbatim ``quote``."""

    check: str
    found: bool
    turn: int | None = None
    quote: str | None = None
    similarity: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.check, "found": self.found, "turn": self.turn, "quote": self.quote,
                "similarity": self.similarity}


@dataclass
class Violation:
    """An avoid phrase the trainee said, where and in which words."""

    avoid: str
    turn: int
    quote: str
    similarity: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"avoid": self.avoid, "turn": self.turn, "quote": self.quote, "similarity": self.similarity}


@dataclass
class CriterionScore:
    """One rubric criterion's score (``None``: not scored), its evidence and how it was reached."""

    criterion: str
    score: float | None
    max_score: float = MAX_SCORE
    weight: float = 1.0
    checks: list[CheckResult] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    method: str = "offline"
    reasoning: str | None = None
    note: str | None = None
    #: what the LLM judge claimed and the transcript does not hold (quotes dropped with their credit)
    dropped: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "criterion": self.criterion, "score": self.score, "max_score": self.max_score, "weight": self.weight,
            "checks": [c.to_dict() for c in self.checks], "violations": [v.to_dict() for v in self.violations],
            "method": self.method, "reasoning": self.reasoning, "note": self.note, "dropped": list(self.dropped),
        }


@dataclass
class Scorecard:
    """A transcript's scores on a rubric, its speech metrics and the total (0-100, ``None`` if nothing scored)."""

    criteria: list[CriterionScore]
    metrics: dict[str, Any]
    total: float | None
    max_total: float = 100.0
    method: str = "offline"
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"criteria": [c.to_dict() for c in self.criteria], "metrics": dict(self.metrics), "total": self.total,
                "max_total": self.max_total, "method": self.method, "note": self.note}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scorecard:
        """The inverse of :meth:`to_dict` (extra keys are ignored, missing optional ones take their defaults)."""
        criteria = []
        for c in data.get("criteria", []):
            criteria.append(CriterionScore(
                criterion=c["criterion"], score=c.get("score"), max_score=c.get("max_score", MAX_SCORE),
                weight=c.get("weight", 1.0),
                checks=[CheckResult(k["check"], bool(k["found"]), k.get("turn"), k.get("quote"), k.get("similarity"))
                        for k in c.get("checks", [])],
                violations=[Violation(v["avoid"], v["turn"], v["quote"], v.get("similarity"))
                            for v in c.get("violations", [])],
                method=c.get("method", "offline"), reasoning=c.get("reasoning"), note=c.get("note"),
                dropped=list(c.get("dropped", []))))
        return cls(criteria, dict(data.get("metrics", {})), data.get("total"), data.get("max_total", 100.0),
                   data.get("method", "offline"), data.get("note"))


def criterion_score(item: RubricItem, found: int, violations: int) -> float | None:
    """The rule of the module docstring: ``None`` for a criterion with neither checks nor avoid phrases."""
    if not item.checks and not item.avoid:
        return None
    base = MAX_SCORE * found / len(item.checks) if item.checks else MAX_SCORE
    return round(max(base - VIOLATION_PENALTY * violations, 0.0), 1)


def total_of(criteria: list[CriterionScore]) -> float | None:
    """The weighted mean of the scored criteria, 0-100 (``None`` when none is scored or all weigh 0)."""
    scored = [c for c in criteria if c.score is not None]
    weight = sum(c.weight for c in scored)
    if not scored or weight <= 0:
        return None
    return round(100 * sum(c.weight * (c.score or 0.0) / c.max_score for c in scored) / weight, 1)


def score_offline(persona: Persona, transcript: Transcript, matcher: EvidenceMatcher) -> Scorecard:
    """The offline scorecard (blocking: it embeds)."""
    rubric = persona.scenario.rubric
    metrics = speech_metrics(transcript)
    if not rubric:
        return Scorecard([], metrics, None, note=NO_RUBRIC)
    checks = [c for item in rubric for c in item.checks]
    avoid = [a for item in rubric for a in item.avoid]
    check_matches, avoid_matches = matcher.match(checks, avoid, transcript)
    criteria = []
    ci = ai = 0
    for item in rubric:
        mine = check_matches[ci:ci + len(item.checks)]
        bad = avoid_matches[ai:ai + len(item.avoid)]
        ci += len(item.checks)
        ai += len(item.avoid)
        criteria.append(offline_criterion(item, mine, bad))
    return Scorecard(criteria, metrics, total_of(criteria))


def offline_criterion(item: RubricItem, checks: list[Match], avoid: list[Match]) -> CriterionScore:
    """A criterion scored from its matches."""
    results = [CheckResult(m.phrase, m.found, m.turn, m.quote, m.score) for m in checks]
    violations = [Violation(m.phrase, m.turn, m.quote, m.score) for m in avoid
                  if m.found and m.turn is not None and m.quote is not None]
    found = sum(r.found for r in results)
    score = criterion_score(item, found, len(violations))
    return CriterionScore(item.criterion, score, MAX_SCORE, item.weight, results, violations, "offline",
                          note=NO_CHECKS if score is None else None)


async def score_transcript(persona: Persona, transcript: Transcript, *, embedder: Any,
                           llm: LLMConfig | None = None) -> Scorecard:
    """Score ``transcript`` on ``persona``'s rubric: offline with ``embedder`` (always computed), and with the LLM
    judge too when ``llm`` is given (see :mod:`.judge`; a judge that fails or answers no JSON leaves the offline
    scores, with the reason in ``method``)."""
    matcher = EvidenceMatcher(embedder)
    offline = await asyncio.to_thread(score_offline, persona, transcript, matcher)
    if llm is None or not persona.scenario.rubric:
        return offline
    from .judge import judge_transcript

    return await judge_transcript(persona, transcript, llm, offline)
