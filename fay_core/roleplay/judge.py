"""The LLM judge: reasoning first, then a score per criterion, then quotes, and every quote checked.

With an LLM configured, the judge (the persona's LLM through litellm, as :mod:`fay_core.brain` calls it) gets the
rubric and the numbered transcript and answers JSON, reasoning before the score (as SOTOPIA-Eval's rubric
does)::

    {"criteria": [{"criterion": "Empathy", "reasoning": "...", "score": 7,
                   "checks": [{"check": "...", "found": true, "turn": 3, "quote": "..."}],
                   "violations": [{"avoid": "...", "turn": 5, "quote": "..."}]}]}

**Every quote is verified** against the transcript: it must be, after normalising case, whitespace and
punctuation, a substring of a trainee turn (the turn the judge named, or else any trainee turn, whose index is
then used), and the scorecard keeps that turn's own wording of it. What is not there was made up, and goes with
what it earned, as the knowledge base's ``NumberGate`` drops an unsupported number:

- a found check whose quote is not verified becomes not found, and the judge's score loses that check's share
  (``max_score / len(checks)``);
- a violation whose quote is not verified is dropped (the score is not raised for it: nothing unverified moves
  a score up);
- a criterion without checks keeps the judge's score only if at least one of its ``evidence`` quotes (the
  judge may give them as ``evidence: [{"turn", "quote"}]``) is verified, else it scores 0.

The score is clamped to 0..max_score. What was dropped is listed in the criterion's ``dropped``.

**Fallbacks, never a crash.** If the LLM fails, or its reply holds no JSON object with a ``criteria`` list, the
offline scorecard stands, with ``method`` saying why (``"offline (judge reply not JSON: ...)"``). A criterion the
judge left out keeps its offline score (``method: "offline"``); the others say ``"llm"``.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

from ..brain.llm import LLMClient, LLMConfig
from ..errors import EngineError
from ..persona import Persona, RubricItem
from .scorecard import MAX_SCORE, CheckResult, CriterionScore, Scorecard, Violation, total_of
from .transcript import Transcript

SYSTEM = """You assess a role-play training session. The trainee is scored on a rubric; the avatar played the \
other side. Judge only what the trainee said. For each criterion: first write your reasoning, then a score from 0 \
to {max_score:g}, then for each check whether the trainee did it, with the turn number and an exact quote copied \
from that trainee turn, and for each avoid phrase whether the trainee said it (turn and exact quote). Never \
paraphrase a quote. Answer with JSON only, in this shape:
{{"criteria": [{{"criterion": "...", "reasoning": "...", "score": 0, \
"checks": [{{"check": "...", "found": true, "turn": 0, "quote": "..."}}], \
"violations": [{{"avoid": "...", "turn": 0, "quote": "..."}}], "evidence": [{{"turn": 0, "quote": "..."}}]}}]}}"""

_PUNCT = re.compile(r"[\W_]+", re.UNICODE)


def normalise(text: str) -> str:
    """Lower case, punctuation and whitespace removed (NFKC first: full-width forms read as their ASCII twins)."""
    return _PUNCT.sub("", unicodedata.normalize("NFKC", text).lower())


def _normalised_with_map(text: str) -> tuple[str, list[int]]:
    """``normalise(text)`` and, for each of its characters, the index in ``text`` it came from."""
    out, where = [], []
    for i, ch in enumerate(text):
        n = normalise(ch)
        out.append(n)
        where.extend([i] * len(n))
    return "".join(out), where


def _locate(quote: str, text: str) -> str | None:
    """The verbatim stretch of ``text`` that ``quote`` matches once normalised, or ``None``."""
    q = normalise(quote)
    norm, where = _normalised_with_map(text)
    at = norm.find(q)
    if len(q) < 2 or at < 0:
        return None
    return text[where[at]:where[at + len(q) - 1] + 1]


def verify_quote(transcript: Transcript, quote: Any, turn: Any) -> tuple[int, str] | None:
    """The trainee turn ``quote`` is taken from (the named ``turn`` first) and the quote as that turn words it
    (verbatim), or ``None`` when no trainee turn holds it."""
    if not isinstance(quote, str):
        return None
    trainee = transcript.of("trainee")
    named = [(i, t) for i, t in trainee if isinstance(turn, int) and not isinstance(turn, bool) and i == turn]
    for i, t in [*named, *trainee]:
        found = _locate(quote, t.text)
        if found is not None:
            return i, found
    return None


def judge_messages(persona: Persona, transcript: Transcript) -> list[dict[str, Any]]:
    """The judge's prompt: the rubric and the numbered transcript."""
    rubric = [{"criterion": r.criterion, "weight": r.weight, "description": r.description, "checks": r.checks,
               "avoid": r.avoid} for r in persona.scenario.rubric]
    lines = [f"[{i}] {t.speaker}: {t.text}" for i, t in enumerate(transcript.turns)]
    user = (f"Scenario: {persona.scenario.kind}. Goal: {persona.scenario.goal or '-'}\n"
            f"Rubric (JSON):\n{json.dumps(rubric, ensure_ascii=False)}\n\nTranscript:\n" + "\n".join(lines))
    return [{"role": "system", "content": SYSTEM.format(max_score=MAX_SCORE)}, {"role": "user", "content": user}]


def parse_reply(text: str) -> list[dict[str, Any]]:
    """The ``criteria`` list of the judge's reply (a code fence or words around the JSON are allowed).

    Raises :class:`ValueError` saying what is wrong.
    """
    body = text.strip()
    fence = re.search(r"```(?:json)?\s*(.*?)```", body, re.DOTALL)
    if fence:
        body = fence.group(1).strip()
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end <= start:
        raise ValueError(f"no JSON object in {_clip(text)!r}")
    try:
        data = json.loads(body[start:end + 1])
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"{exc} in {_clip(text)!r}") from None
    criteria = data.get("criteria") if isinstance(data, dict) else None
    if not isinstance(criteria, list) or not all(isinstance(c, dict) for c in criteria):
        raise ValueError("the JSON has no 'criteria' list of objects")
    return criteria


def _clip(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[:n] + "..."


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def verified_criterion(item: RubricItem, judged: dict[str, Any], transcript: Transcript) -> CriterionScore:
    """One judged criterion with its quotes verified and unverified credit removed (see the module docstring)."""
    raw_score = _number(judged.get("score"))
    score = min(max(raw_score if raw_score is not None else 0.0, 0.0), MAX_SCORE)
    claimed = {c.get("check"): c for c in judged.get("checks", []) if isinstance(c, dict)}
    share = MAX_SCORE / len(item.checks) if item.checks else 0.0
    dropped: list[dict[str, Any]] = []
    checks = []
    for check in item.checks:
        c = claimed.get(check, {})
        if c.get("found") is True:
            hit = verify_quote(transcript, c.get("quote"), c.get("turn"))
            if hit is not None:
                checks.append(CheckResult(check, True, *hit))
                continue
            dropped.append({"check": check, "turn": c.get("turn"), "quote": c.get("quote"), "credit": share})
            score -= share
        checks.append(CheckResult(check, False))
    violations = []
    for v in judged.get("violations", []):
        if not isinstance(v, dict) or v.get("avoid") not in item.avoid:
            continue
        hit = verify_quote(transcript, v.get("quote"), v.get("turn"))
        if hit is None:
            dropped.append({"avoid": v.get("avoid"), "turn": v.get("turn"), "quote": v.get("quote")})
        else:
            violations.append(Violation(str(v["avoid"]), *hit))
    note = None
    if not item.checks:
        evidence = [e for e in judged.get("evidence", []) if isinstance(e, dict)]
        verified = [e for e in evidence if verify_quote(transcript, e.get("quote"), e.get("turn")) is not None]
        dropped += [{"evidence": e.get("quote"), "turn": e.get("turn")} for e in evidence if e not in verified]
        if not verified and not item.avoid:
            score, note = 0.0, "the judge gave no verified evidence quote for this criterion: scored 0"
    return CriterionScore(item.criterion, round(max(score, 0.0), 1), MAX_SCORE, item.weight, checks, violations,
                          "llm", reasoning=str(judged.get("reasoning") or "") or None, note=note, dropped=dropped)


async def judge_transcript(persona: Persona, transcript: Transcript, llm: LLMConfig,
                           offline: Scorecard) -> Scorecard:
    """The judge's scorecard, or ``offline`` with the reason when the judge fails (see the module docstring)."""
    try:
        reply = await LLMClient(llm).complete(judge_messages(persona, transcript))
    except EngineError as exc:
        return _fallback(offline, f"judge failed: {exc}")
    try:
        judged = parse_reply(reply)
    except ValueError as exc:
        return _fallback(offline, f"judge reply not JSON: {exc}")
    by_name = {str(c.get("criterion", "")).strip().lower(): c for c in judged}
    criteria = []
    for item, off in zip(persona.scenario.rubric, offline.criteria, strict=True):
        mine = by_name.get(item.criterion.strip().lower())
        criteria.append(verified_criterion(item, mine, transcript) if mine is not None else off)
    used = any(c.method == "llm" for c in criteria)
    return Scorecard(criteria, offline.metrics, total_of(criteria), offline.max_total,
                     "llm" if used else "offline (the judge scored no criterion of the rubric)", offline.note)


def _fallback(offline: Scorecard, why: str) -> Scorecard:
    return Scorecard(offline.criteria, offline.metrics, offline.total, offline.max_total, f"offline ({why})",
                     offline.note)
