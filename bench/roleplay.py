"""Role-play scoring benchmark: check detection, good against poor trainees, time, and the judge's quote gate.

Data: ``bench/data/roleplay/`` — transcripts written for this (good, medium and poor trainees; an interview and a
sales objection on the demo bank's Platinum card; English and Chinese), each check and avoid phrase of its
rubric (``personas/*.yaml`` there) labelled by hand with the trainee turn that does it (``gold``). ``tune/``
chose the constants of :mod:`fay_core.roleplay.evidence`; ``report/`` was written separately and is only scored.

- **Detection**: precision, recall and F1 of checks found (a true positive needs the gold turn), of avoid
  phrases violated, and of both, per set and per language; also *cross-language*: the Chinese transcripts scored
  with the English rubric (the same checks, translated), where only the multilingual embedder can match.
- **Good vs poor**: each criterion's offline score for the good and the poor trainee of each scenario (report
  set); good must outscore poor on every criterion.
- **Time**: offline scoring per transcript (embedding included, model loaded).
- **Judge**: the LLM path against ``FakeLLM`` (real HTTP through litellm) answering with one fabricated quote:
  the quote is dropped with its credit; and a reply that is not JSON falls back to the offline scores.

    python bench/roleplay.py            # report with the module's constants
    python bench/roleplay.py --tune     # also search the constants on the tune set and print the best

Prints a table and writes ``bench/results/roleplay.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "plugins"))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from fay_core.brain.llm import LLMConfig  # noqa: E402
from fay_core.persona import Persona, load_persona  # noqa: E402
from fay_core.roleplay import evidence  # noqa: E402
from fay_core.roleplay.evidence import EvidenceMatcher, Span  # noqa: E402
from fay_core.roleplay.scoring import score_offline, score_transcript  # noqa: E402
from fay_core.roleplay.transcript import Transcript  # noqa: E402
from fay_core.testing import FakeLLM  # noqa: E402
from fay_e5.fast import FastE5Embedder  # noqa: E402

DATA = ROOT / "bench" / "data" / "roleplay"
RESULTS = ROOT / "bench" / "results"


class Case:
    """One labelled transcript and the features of its phrases against its spans (computed once)."""

    def __init__(self, path: Path, personas: dict[str, Persona], matcher: EvidenceMatcher,
                 rubric: str | None = None) -> None:
        raw = json.loads(path.read_text(encoding="utf-8"))
        self.name = path.stem
        self.split = path.parent.name
        self.level, self.language = raw["level"], raw["language"]
        own = personas[raw["persona"]]
        self.persona = personas[rubric or raw["persona"]]
        self.transcript = Transcript.from_dict(raw, str(path))
        items = self.persona.scenario.rubric
        own_items = own.scenario.rubric
        # gold by position, so that a translated rubric (cross-language) reads the same labels
        self.checks = [c for it in items for c in it.checks]
        self.avoid = [a for it in items for a in it.avoid]
        own_checks = [c for it in own_items for c in it.checks]
        own_avoid = [a for it in own_items for a in it.avoid]
        self.gold_checks = [raw["gold"]["found"].get(c) for c in own_checks]
        self.gold_avoid = [raw["gold"]["violated"].get(a) for a in own_avoid]
        self.spans: list[Span]
        self.spans, self.raw = matcher.raw_scores([*self.checks, *self.avoid], self.transcript)

    def predict(self, lexical_weight: float, negation: float, threshold: float, avoid_threshold: float
                ) -> tuple[list[int | None], list[int | None]]:
        """The predicted turn of each check and avoid phrase (None: not found)."""
        score = self.raw[..., 0] + lexical_weight * self.raw[..., 1] - negation * self.raw[..., 2]
        out: list[int | None] = []
        for k in range(len(self.checks) + len(self.avoid)):
            j = int(np.argmax(score[k]))
            limit = threshold if k < len(self.checks) else avoid_threshold
            out.append(self.spans[j].turn if score[k, j] >= limit else None)
        return out[: len(self.checks)], out[len(self.checks):]


def prf(pairs: list[tuple[int | None, int | None]]) -> dict[str, float]:
    """Precision, recall and F1 of (predicted turn, gold turn) pairs; a hit needs the same turn."""
    tp = sum(1 for p, g in pairs if p is not None and p == g)
    fp = sum(1 for p, g in pairs if p is not None and p != g)
    fn = sum(1 for p, g in pairs if g is not None and p != g)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 3), "recall": round(recall, 3), "f1": round(f1, 3), "tp": tp, "fp": fp,
            "fn": fn, "n": len(pairs)}


def detection(cases: list[Case], params: tuple[float, float, float, float]) -> dict[str, dict[str, float]]:
    checks, avoid = [], []
    for c in cases:
        pc, pa = c.predict(*params)
        checks += list(zip(pc, c.gold_checks, strict=True))
        avoid += list(zip(pa, c.gold_avoid, strict=True))
    return {"checks": prf(checks), "avoid": prf(avoid), "all": prf(checks + avoid)}


def tune(cases: list[Case]) -> dict[str, Any]:
    """The grid search the module's constants came from (on the tune set only)."""
    best: dict[str, Any] = {"f1": -1.0}
    grid = np.round(np.arange(-0.02, 0.16, 0.0025), 4)
    for lw, neg in itertools.product([0.0, 0.05, 0.1, 0.15, 0.2, 0.3], [0.0, 0.02, 0.04, 0.06]):
        t_best = _middle_best(grid, lambda t, lw=lw, neg=neg: detection(cases, (lw, neg, t, 9.0))["checks"]["f1"])
        a_best = _middle_best(grid, lambda a, lw=lw, neg=neg, tb=t_best: detection(cases, (lw, neg, tb, a))["avoid"]
                              ["f1"])
        d = detection(cases, (lw, neg, float(t_best), float(a_best)))
        f1 = d["checks"]["f1"] + d["avoid"]["f1"]
        if f1 > best["f1"]:
            best = {"f1": f1, "lexical_weight": lw, "negation_penalty": neg, "check_threshold": float(t_best),
                    "avoid_threshold": float(a_best), "detection": d}
    return best


def _middle_best(grid: np.ndarray, f1: Any) -> float:
    """The middle of the thresholds that reach the best F1 (not an edge of the plateau: that would overfit)."""
    values = [f1(float(t)) for t in grid]
    top = max(values)
    tied = [float(t) for t, v in zip(grid, values, strict=True) if v == top]
    return tied[len(tied) // 2]


async def judge_demo(persona: Persona, transcript: Transcript, embedder: Any) -> dict[str, Any]:
    """FakeLLM answers with a verified quote and a fabricated one, then with prose: what the scorecard keeps."""
    item = persona.scenario.rubric[1]
    trainee = transcript.of("trainee")
    turn, real = trainee[1]
    real_quote = real.text.split(". ")[0]
    fabricated = "I always give angry customers a full refund on the spot, no questions asked."
    reply = {"criteria": [{
        "criterion": item.criterion, "reasoning": "The candidate let the customer talk and apologised.", "score": 10,
        "checks": [{"check": item.checks[0], "found": True, "turn": turn, "quote": real_quote},
                   {"check": item.checks[1], "found": True, "turn": turn, "quote": fabricated},
                   {"check": item.checks[2], "found": True, "turn": turn, "quote": real.text}],
        "violations": []}]}
    out: dict[str, Any] = {}
    async with FakeLLM() as fake:
        llm = LLMConfig(model=FakeLLM.model, api_base=fake.url, first_token_timeout_s=5, timeout_s=10)
        fake.enqueue(json.dumps(reply))
        t0 = time.perf_counter()
        card = await score_transcript(persona, transcript, embedder=embedder, llm=llm)
        out["judge_s"] = round(time.perf_counter() - t0, 3)
        crit = card.criteria[1]
        out["fabricated"] = {
            "criterion": crit.criterion, "judge_score": 10, "kept_score": crit.score, "method": crit.method,
            "dropped": crit.dropped, "checks_found": [c.check for c in crit.checks if c.found],
            "fabricated_quote_kept": any(c.quote == fabricated for c in crit.checks),
        }
        fake.enqueue("I think the candidate did rather well overall, maybe an eight.")
        card = await score_transcript(persona, transcript, embedder=embedder, llm=llm)
        offline = score_offline(persona, transcript, EvidenceMatcher(embedder))
        out["not_json"] = {"method": card.method, "total": card.total, "offline_total": offline.total}
    return out


def main(args: argparse.Namespace) -> dict[str, Any]:
    embedder = FastE5Embedder()
    t0 = time.perf_counter()
    embedder.embed_queries(["warm up"])
    load_s = time.perf_counter() - t0
    personas = {p.stem: load_persona(p) for p in sorted((DATA / "personas").glob("*.yaml"))}
    matcher = EvidenceMatcher(embedder)
    cases = {split: [Case(p, personas, matcher) for p in sorted((DATA / split).glob("*.json"))]
             for split in ("tune", "report")}
    params = (evidence.LEXICAL_WEIGHT, evidence.NEGATION_PENALTY, evidence.CHECK_THRESHOLD, evidence.AVOID_THRESHOLD)
    result: dict[str, Any] = {
        "embedder": embedder.name, "model_load_s": round(load_s, 2),
        "constants": dict(zip(["lexical_weight", "negation_penalty", "check_threshold", "avoid_threshold"], params,
                              strict=True)),
        "transcripts": {k: len(v) for k, v in cases.items()},
    }
    if args.tune:
        result["tuned"] = tune(cases["tune"])
    result["detection"] = {split: detection(cs, params) for split, cs in cases.items()}
    result["detection_by_language"] = {
        f"report/{lang}": detection([c for c in cases["report"] if c.language == lang], params)
        for lang in ("en", "zh")}
    cross = {"interview_zh": "interview_en", "sales_zh": "sales_en"}
    cross_cases = [Case(DATA / "report" / f"{c.name}.json", personas, matcher, rubric=cross[c.persona.id])
                   for c in cases["report"] if c.persona.id in cross]
    result["cross_language"] = {"zh transcripts, en rubric": detection(cross_cases, params)}

    times, versus = [], []
    for c in cases["report"]:
        t0 = time.perf_counter()
        card = score_offline(c.persona, c.transcript, EvidenceMatcher(embedder))
        times.append(time.perf_counter() - t0)
        c.card = card  # type: ignore[attr-defined]
    by = {(c.persona.id, c.level): c.card for c in cases["report"]}  # type: ignore[attr-defined]
    for pid in sorted({c.persona.id for c in cases["report"]}):
        good, medium, poor = by[(pid, "good")], by[(pid, "medium")], by[(pid, "poor")]
        for g, m, p in zip(good.criteria, medium.criteria, poor.criteria, strict=True):
            versus.append({"persona": pid, "criterion": g.criterion, "good": g.score, "medium": m.score,
                           "poor": p.score, "good_wins": (g.score or 0) > (p.score or 0)})
        versus.append({"persona": pid, "criterion": "TOTAL", "good": good.total, "medium": medium.total,
                       "poor": poor.total, "good_wins": (good.total or 0) > (poor.total or 0)})
    result["good_vs_poor"] = versus
    result["time_per_transcript_s"] = {"mean": round(statistics.fmean(times), 4), "max": round(max(times), 4),
                                       "n": len(times)}
    ie = personas["interview_en"]
    result["judge"] = asyncio.run(judge_demo(ie, next(c.transcript for c in cases["report"]
                                                       if c.persona.id == "interview_en" and c.level == "good"),
                                             embedder))
    return result


def print_table(r: dict[str, Any]) -> None:
    print(f"role-play scoring ({r['embedder']}, constants {r['constants']})")
    if "tuned" in r:
        t = r["tuned"]
        print(f"tuned on tune set: lexical_weight {t['lexical_weight']}, negation {t['negation_penalty']}, "
              f"check_threshold {t['check_threshold']}, avoid_threshold {t['avoid_threshold']}")
    print(f"{'set':34} {'kind':7} {'P':>6} {'R':>6} {'F1':>6} {'tp':>4} {'fp':>4} {'fn':>4}")
    rows = [*r["detection"].items(), *r["detection_by_language"].items(), *r["cross_language"].items()]
    for name, d in rows:
        for kind in ("checks", "avoid", "all"):
            x = d[kind]
            print(f"{name:34} {kind:7} {x['precision']:6.3f} {x['recall']:6.3f} {x['f1']:6.3f} {x['tp']:4} "
                  f"{x['fp']:4} {x['fn']:4}")
    print(f"\n{'persona':14} {'criterion':20} {'good':>6} {'medium':>7} {'poor':>6}  good>poor")
    for v in r["good_vs_poor"]:
        print(f"{v['persona']:14} {v['criterion']:20} {v['good']!s:>6} {v['medium']!s:>7} {v['poor']!s:>6}  "
              f"{'yes' if v['good_wins'] else 'NO'}")
    t = r["time_per_transcript_s"]
    print(f"\noffline scoring per transcript: mean {t['mean'] * 1000:.0f} ms, max {t['max'] * 1000:.0f} ms "
          f"({t['n']} transcripts; model load {r['model_load_s']} s)")
    j = r["judge"]
    f = j["fabricated"]
    print(f"judge (FakeLLM, fabricated quote): '{f['criterion']}' judge said {f['judge_score']}, kept {f['kept_score']}"
          f" ({f['method']}); dropped {[d.get('quote') for d in f['dropped']]}; fabricated quote kept: "
          f"{f['fabricated_quote_kept']}")
    n = j["not_json"]
    print(f"judge reply not JSON: method '{n['method'][:70]}...', total {n['total']} (offline {n['offline_total']})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tune", action="store_true", help="search the constants on the tune set (and print them)")
    result = main(parser.parse_args())
    print_table(result)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "roleplay.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print(f"wrote {RESULTS / 'roleplay.json'}")
