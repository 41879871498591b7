"""The scorecard of a role-play: criteria with their checks, violations and scores, the metrics and the total.

Its JSON (:meth:`Scorecard.to_dict`) is what ``fay roleplay score --json`` prints and the report store keeps; how
the scores are reached is in :mod:`.scoring` and :mod:`.judge`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..persona import RubricItem

#: every criterion is scored out of this
MAX_SCORE = 10.0
#: points lost per violated avoid phrase
VIOLATION_PENALTY = 3.0


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
