"""What a turn reported, and the expectations that need no LLM: sources, declines, texts, tools, latency.

Each failure is one sentence saying what was expected and what happened, e.g.
``expected source hb-en-007, cited en/faq.yaml#hb-en-018`` or ``declined, expected an answer``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..events import Citation
from .spec import Expectations


@dataclass
class TurnResult:
    """One turn as the customer got it."""

    question: str
    answer: str
    citations: list[Citation] = field(default_factory=list)
    declined: bool = False
    latency_ms: float = 0.0
    tools: list[tuple[str, str]] = field(default_factory=list)  #: (name, error) of each call, in order
    answered_by: str = ""
    errors: list[str] = field(default_factory=list)  #: what the turn reported as going wrong

    @property
    def sources(self) -> list[str]:
        """The cited chunks' ids (``en/faq.yaml#hb-en-001``: the file and the entry), without repeats."""
        return list(dict.fromkeys(c.chunk_id or c.source for c in self.citations))


@dataclass
class Transcript:
    """The turns of one session, as a judge reads them."""

    turns: list[TurnResult]

    def text(self, customer: str = "Customer", agent: str = "Agent") -> str:
        lines = []
        for t in self.turns:
            lines.append(f"{customer}: {t.question}")
            lines.append(f"{agent}: {t.answer}")
            if t.tools:
                lines.append(f"  (tools called: {', '.join(name for name, _ in t.tools)})")
        return "\n".join(lines)

    def sources(self) -> list[Citation]:
        return [c for t in self.turns for c in t.citations]


def cites(citations: list[Citation], wanted: str) -> bool:
    """Whether ``wanted`` — an entry id (``hb-en-007``), a file (``faq.yaml``, ``en/faq.yaml``) or a chunk id
    (``en/faq.yaml#hb-en-007``) — names one of ``citations``."""
    for c in citations:
        entry = c.chunk_id.split("#", 1)[1] if "#" in c.chunk_id else ""
        if wanted in (c.chunk_id, entry, c.source) or c.source.endswith("/" + wanted):
            return True
    return False


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def _short(text: str, limit: int = 80) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[: limit - 1] + "…")


def check(expect: Expectations, turns: list[TurnResult]) -> list[str]:
    """The failures of ``expect`` over ``turns`` (one turn, or a whole conversation), judge aside.

    Over several turns: each source and tool must appear in some turn, ``contains`` in some answer,
    ``not_contains`` in none, ``declines: true`` in some turn and ``false`` in none, and every turn must be within
    ``within_ms``.
    """
    failures: list[str] = []
    citations = [c for t in turns for c in t.citations]
    cited = ", ".join(dict.fromkeys(s for t in turns for s in t.sources)) or "none"
    answers = [t.answer for t in turns]
    any_declined = any(t.declined for t in turns)
    for t in turns:
        failures += [f"the turn reported an error: {e}" for e in t.errors]
        if t.answered_by == "fallback":
            failures.append("the LLM failed and the offline answerer stood in")
    for wanted in expect.source:
        if not cites(citations, wanted):
            failures.append(f"expected source {wanted}, cited {cited}" + (" (declined)" if any_declined else ""))
    if expect.declines is True and not any_declined:
        failures.append(f"expected a decline, answered (sources: {cited}): {_short(answers[-1])}")
    if expect.declines is False and any_declined:
        failures.append("declined, expected an answer")
    for text in expect.contains:
        if not any(_norm(text) in _norm(a) for a in answers):
            failures.append(f"answer lacks {text!r}: {_short(answers[-1])}")
    for text in expect.not_contains:
        if any(_norm(text) in _norm(a) for a in answers):
            failures.append(f"answer contains {text!r}")
    calls = [call for t in turns for call in t.tools]
    for name in expect.tool:
        made = [error for called, error in calls if called == name]
        if not made:
            names = ", ".join(dict.fromkeys(n for n, _ in calls)) or "none"
            note = "" if calls or any(t.answered_by != "offline" for t in turns) else \
                " (the offline answerer calls no tools: configure an LLM)"
            failures.append(f"tool {name} was not called (called: {names}){note}")
        elif all(made):
            failures.append(f"tool {name} returned an error: {made[-1]}")
    if expect.within_ms is not None:
        for i, t in enumerate(turns, 1):
            if t.latency_ms > expect.within_ms:
                where = f"turn {i} " if len(turns) > 1 else ""
                failures.append(f"{where}took {t.latency_ms:.0f} ms, over within_ms {expect.within_ms:g}")
    return failures
