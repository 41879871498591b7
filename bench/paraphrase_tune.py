"""Threshold tuning for the bank personas' answerability, by cross-validation on the paraphrase *dev* sets.

    python bench/paraphrase_tune.py [--folds 5] [--json]

Every dev question (both languages, in scope and out of scope) is searched once; then each setting of the grid
(``min_score``, the suggestion band ``min_score - suggest_score``, ``knowledge.coverage_weight``,
``knowledge.passage_offset``) grades them all again from the cached hits. The utility of a setting is

    right + oos_declined - WRONG_COST * (wrong + oos_answered)

(suggestions count neither for nor against: a check question is cheaper than a wrong answer, dearer than a right
one), pooled over en and zh since the shipped personas share their thresholds. ``--folds`` k-fold
cross-validation picks the best setting on k-1 folds and scores it on the held-out fold: the mean held-out figures
are what to expect on new questions, and the spread between folds shows how much the choice overfits. The
setting printed at the end is the best on the whole dev set. The test sets are never read.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import random
import sys
import tempfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from paraphrase import PERSONAS, judge, load_set  # noqa: E402

from fay_core.brain.rag import assessor_for  # noqa: E402
from fay_core.knowledge import answerability, ingest_persona  # noqa: E402
from fay_core.knowledge.answerability import Assessor  # noqa: E402
from fay_core.knowledge.documents import Hit  # noqa: E402
from fay_core.knowledge.store import KnowledgeBase  # noqa: E402
from fay_core.persona import load_persona  # noqa: E402
from fay_core.settings import KnowledgeSettings  # noqa: E402

#: a wrong answer (or an out-of-scope question answered) costs this many right answers
WRONG_COST = 4.0
#: the suggestion band is kept narrow: a wide one turns right answers into check questions
BANDS = (0.0, 0.01, 0.02, 0.03)
MIN_SCORES = tuple(round(0.84 + 0.005 * i, 3) for i in range(19))  # 0.84 .. 0.93
COVERAGE = (0.0, 0.1, 0.15, 0.2, 0.3)
PASSAGE = (0.0, 0.04, 0.08, 0.12)

Item = tuple[str, dict[str, Any] | None]  # (question, in-scope item or None for out of scope)


def cached(assessor: Assessor) -> Assessor:
    """The assessor with its search, knowledge text and entity check memoised (the grid only re-grades)."""
    search: Callable[[str], list[Hit]] = lru_cache(maxsize=None)(lambda q: assessor.search(q))
    text = lru_cache(maxsize=1)(assessor.knowledge_text)
    names = dataclasses.replace(assessor).names
    absent = lru_cache(maxsize=None)(names.absent_in)
    names.absent_in = absent  # type: ignore[method-assign]
    return dataclasses.replace(assessor, search=search, knowledge_text=text, names=names)


def memoise_checks() -> None:
    """Coverage and term checks keyed by question words and entry id: the same for every setting of the grid."""
    cover, mismatch = answerability.coverage, answerability.term_mismatch
    seen_cover: dict[tuple[frozenset[str], str], float] = {}
    seen_term: dict[tuple[frozenset[int], str], bool] = {}

    def coverage(words: set[str], hit: Hit) -> float:
        key = (frozenset(words), hit.entry.id)
        if key not in seen_cover:
            seen_cover[key] = cover(words, hit)
        return seen_cover[key]

    def term_mismatch(wanted: set[int], hit: Hit) -> bool:
        key = (frozenset(wanted), hit.entry.id)
        if key not in seen_term:
            seen_term[key] = mismatch(wanted, hit)
        return seen_term[key]

    answerability.coverage = coverage  # type: ignore[assignment]
    answerability.term_mismatch = term_mismatch  # type: ignore[assignment]


def outcome(assessor: Assessor, question: str, item: dict[str, Any] | None) -> str:
    a = assessor.assess(question)
    if item is not None:
        return judge(item, a)
    return {"decline": "oos_declined", "uncertain": "oos_suggested", "answer": "oos_answered"}[a.verdict]


def utility(outcomes: list[str]) -> float:
    n_in = sum(1 for o in outcomes if not o.startswith("oos_")) or 1
    n_oos = sum(1 for o in outcomes if o.startswith("oos_")) or 1
    c = {k: outcomes.count(k) for k in set(outcomes)}
    right, wrong = c.get("right", 0) / n_in, c.get("wrong", 0) / n_in
    declined, answered = c.get("oos_declined", 0) / n_oos, c.get("oos_answered", 0) / n_oos
    return right + declined - WRONG_COST * (wrong + answered)


def figures(outcomes: list[str]) -> dict[str, float]:
    ins = [o for o in outcomes if not o.startswith("oos_")]
    oos = [o for o in outcomes if o.startswith("oos_")]
    return {"right": ins.count("right") / max(len(ins), 1), "wrong": ins.count("wrong") / max(len(ins), 1),
            "oos_declined": oos.count("oos_declined") / max(len(oos), 1)}


def main() -> None:
    from fay_e5.fast import FastE5Embedder
    from fay_e5.settings import E5Settings

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--persona-only", action="store_true",
                    help="tune min_score and the band only, at the settings' coverage_weight and passage_offset")
    ap.add_argument("--band", type=float, action="append", help="only these bands (repeatable)")
    args = ap.parse_args()
    settings = KnowledgeSettings()
    coverage, passage = ((settings.coverage_weight,), (settings.passage_offset,)) if args.persona_only else (
        COVERAGE, PASSAGE)
    grid = list(itertools.product(MIN_SCORES, tuple(args.band or BANDS), coverage, passage))
    items: list[tuple[str, str, dict[str, Any] | None]] = []  # language, question, item
    table: dict[tuple[float, ...], list[str]] = {g: [] for g in grid}
    memoise_checks()
    with tempfile.TemporaryDirectory(prefix="fay-tune-") as work:
        kb = KnowledgeBase(Path(work), FastE5Embedder(E5Settings(threads=1)), settings)
        try:
            for language in ("en", "zh"):
                persona = load_persona(PERSONAS[language])
                base = cached(assessor_for(kb, persona, ingest_persona(kb, persona), settings))
                data = load_set("dev", language)
                qs: list[tuple[str, dict[str, Any] | None]] = [(i["q"], i) for i in data["in_scope"]]
                qs += [(i["q"], None) for i in data["out_of_scope"]]
                items += [(language, q, i) for q, i in qs]
                for ms, band, cov, off in grid:
                    a = dataclasses.replace(base, min_score=ms, suggest_score=round(ms - band, 3),
                                            coverage_weight=cov, passage_offset=off)
                    table[(ms, band, cov, off)] += [outcome(a, q, i) for q, i in qs]
        finally:
            kb.close()
    order = list(range(len(items)))
    random.Random(15).shuffle(order)
    folds = [order[f :: args.folds] for f in range(args.folds)]
    held: list[dict[str, Any]] = []
    for f, test in enumerate(folds):
        train = [i for g, fold in enumerate(folds) if g != f for i in fold]
        best = max(grid, key=lambda g: (utility([table[g][i] for i in train]), -g[1]))
        held.append({"setting": best, **figures([table[best][i] for i in test])})
    best = max(grid, key=lambda g: (utility(table[g]), -g[1]))
    by_language = {lang: figures([table[best][i] for i, it in enumerate(items) if it[0] == lang])
                   for lang in ("en", "zh")}
    mean = {k: sum(h[k] for h in held) / len(held) for k in ("right", "wrong", "oos_declined")}
    out = {"grid": len(grid), "questions": len(items), "folds": held, "cross_validated": mean,
           "best": dict(zip(("min_score", "band", "coverage_weight", "passage_offset"), best, strict=True)),
           "best_on_dev": by_language, "wrong_cost": WRONG_COST}
    if args.json:
        print(json.dumps(out, indent=2))
    ranked = sorted(grid, key=lambda g: utility(table[g]), reverse=True)
    for g in ranked[:8]:
        f = figures(table[g])
        print(f"dev {g}: utility {utility(table[g]):.3f}  right {f['right']:.3f} wrong {f['wrong']:.3f} "
              f"OOS declined {f['oos_declined']:.3f}")
    for h in held:
        print(f"fold setting {h['setting']}: held-out right {h['right']:.3f} wrong {h['wrong']:.3f} "
              f"OOS declined {h['oos_declined']:.3f}")
    print(f"cross-validated: right {mean['right']:.3f} wrong {mean['wrong']:.3f} OOS declined "
          f"{mean['oos_declined']:.3f}")
    print(f"best on all dev: {out['best']}  " + "  ".join(
        f"{k}: right {v['right']:.3f} wrong {v['wrong']:.3f} OOS declined {v['oos_declined']:.3f}"
        for k, v in by_language.items()))


if __name__ == "__main__":
    main()
