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

**Checks in another language than the trainee's** (English checks, a Chinese session) are still matched by the
multilingual embedder, but its cross-language scores sit below the threshold calibrated within one language:
on the bench few such checks are found (recall under 0.1, precision 1), so the scores come out low. The
scorecard then carries a ``note`` saying so: write the checks in the trainee's language, or use the LLM judge.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..brain.llm import LLMConfig
from ..persona import Persona, RubricItem
from ..text import han_count, words
from .evidence import EvidenceMatcher, Match
from .judge import judge_transcript
from .metrics import speech_metrics
from .scorecard import (MAX_SCORE, VIOLATION_PENALTY, CheckResult, CriterionScore, Scorecard, Violation,
                        criterion_score, total_of)
from .transcript import Transcript

__all__ = ["MAX_SCORE", "VIOLATION_PENALTY", "CheckResult", "CriterionScore", "Scorecard", "Violation",
           "criterion_score", "score_offline", "score_transcript", "total_of"]

NO_RUBRIC = ("this persona has no scenario.rubric: nothing to score (add criteria with checks and avoid phrases to "
             "its scenario)")
NO_CHECKS = "no checks or avoid phrases: not scored offline (add checks, or configure an LLM judge)"


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
    note = None
    rubric_lang = _language([*checks, *avoid])
    trainee_lang = _language([t.text for _, t in transcript.of("trainee")])
    if rubric_lang and trainee_lang and rubric_lang != trainee_lang:
        note = (f"the rubric's checks are in {_NAMES[rubric_lang]} but the trainee spoke {_NAMES[trainee_lang]}: "
                "matching across languages finds few checks, so these scores run low; write the checks in the "
                "trainee's language, or configure an LLM judge")
    return Scorecard(criteria, metrics, total_of(criteria), note=note)


_NAMES = {"en": "English", "zh": "Chinese"}


def _language(texts: list[str]) -> str | None:
    """``zh`` or ``en`` by which has more words in ``texts`` (a Han character is a word), ``None`` if none."""
    han = sum(han_count(t) for t in texts)
    other = sum(len(words(t)) for t in texts) - han
    if not han and not other:
        return None
    return "zh" if han > other else "en"


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
    return await judge_transcript(persona, transcript, llm, offline)
