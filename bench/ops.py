"""Operations benchmark: what metrics cost a turn, and a Chroma server's query latency against embedded Chroma.

    python bench/ops.py                 # 200 text turns each way, 300 searches each way
    python bench/ops.py --turns 50 --queries 100

Metrics: the same offline text turns (bank_teller_en, the demo bank's knowledge) through a session with the
metrics observer and one without (``Assembly.metrics = None`` when it was built), turns alternating; the
difference of the mean turn time is the cost per turn, beside the observer handler's own time per event (measured
on a bare bus) and the time to render ``/metrics``. Chroma: the demo bank's English knowledge ingested once
into embedded Chroma and once into a ``chroma run`` server on loopback (started here); the same questions
searched through ``KnowledgeBase.search`` (query embedding, the replica's stamp check, ranking), p50/p95 per store.

Prints a table and writes ``bench/results/ops.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "plugins"))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from fay_core.app import Fay  # noqa: E402
from fay_core.bus import Bus  # noqa: E402
from fay_core.events import LatencyMeasured  # noqa: E402
from fay_core.knowledge import KnowledgeBase  # noqa: E402
from fay_core.metrics import Metrics  # noqa: E402
from fay_core.persona import PersonaStore  # noqa: E402
from fay_core.testing import test_settings  # noqa: E402
from fay_e5.fast import FastE5Embedder  # noqa: E402

RESULTS = ROOT / "bench" / "results"
QUESTIONS = ["What are your opening hours?", "I lost my card", "How much does the Harbor Saver pay?",
             "Where is the nearest branch?", "Can I raise my card limit?", "How do I fly to the moon?"]


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


async def turns(data: Path, n: int) -> dict[str, dict[str, float]]:
    """Two sessions of one runtime, one observed by the metrics and one not, their turns alternating (so the
    machine's load falls on both alike)."""
    settings = test_settings(data, personas_dir=ROOT / "personas")
    async with Fay(settings) as fay:
        observed = await fay.create_session("bank_teller_en")
        metrics, fay.assembly.metrics = fay.assembly.metrics, None
        bare = await fay.create_session("bank_teller_en")
        fay.assembly.metrics = metrics
        took: dict[str, list[float]] = {"on": [], "off": []}
        for i in range(n + len(QUESTIONS)):  # the first round warms both (knowledge, embedder, intent model)
            for key, session in (("on", observed), ("off", bare)) if i % 2 else (("off", bare), ("on", observed)):
                started = time.perf_counter()
                async for _ in session.ask(QUESTIONS[i % len(QUESTIONS)]):
                    pass
                if i >= len(QUESTIONS):
                    took[key].append((time.perf_counter() - started) * 1000)
        await observed.bus.idle()
        render = []
        for _ in range(50):
            started = time.perf_counter()
            fay.metrics.render()
            render.append((time.perf_counter() - started) * 1000)
    return {key: {"mean_ms": float(np.mean(v)), "p50_ms": pct(v, 50), "p95_ms": pct(v, 95),
                  "render_ms": pct(render, 50)} for key, v in took.items()}


async def handler_cost(n: int = 100_000) -> float:
    """µs per event of the metrics observer on a bus that has nothing else."""
    metrics = Metrics()
    bus = Bus("bench")
    metrics.observe(bus, PersonaStore(ROOT / "personas").get("bank_teller_en"))
    await asyncio.sleep(0)
    events = [LatencyMeasured(session_id="bench", stage=f"s{i % 6}", ms=float(i % 900)) for i in range(n)]
    started = time.perf_counter()
    for e in events:
        bus.publish(e)
    await bus.idle()
    took = time.perf_counter() - started
    await bus.close()
    return took / n * 1e6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def searches(kb: KnowledgeBase, n: int) -> dict[str, float]:
    kb.ingest([ROOT / "knowledge" / "demo_bank" / "en"], "bench-ops")
    for q in QUESTIONS:
        kb.search(q, "bench-ops")
    took = []
    for i in range(n):
        started = time.perf_counter()
        kb.search(QUESTIONS[i % len(QUESTIONS)], "bench-ops")
        took.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": pct(took, 50), "p95_ms": pct(took, 95), "mean_ms": float(np.mean(took))}


def chroma_compare(tmp: Path, n: int) -> dict[str, Any]:
    embedder = FastE5Embedder()
    embedded = KnowledgeBase(tmp / "embedded", embedder)
    try:
        out: dict[str, Any] = {"embedded": searches(embedded, n)}
    finally:
        embedded.close()
    port = _free_port()
    chroma = Path(sys.executable).with_name("chroma")
    proc = subprocess.Popen([str(chroma), "run", "--host", "127.0.0.1", "--port", str(port), "--path",
                             str(tmp / "server")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("chroma run did not start") from None
                time.sleep(0.2)
        server = KnowledgeBase(tmp / "replica", embedder, chroma_url=url)
        try:
            out["server"] = searches(server, n)
            started = time.perf_counter()
            for _ in range(200):
                server.sync()
            out["stamp_check_ms"] = (time.perf_counter() - started) / 200 * 1000
        finally:
            server.close()
    finally:
        proc.terminate()
        proc.wait(20)
    return out


def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fay-bench-ops-") as tmp:
        both = asyncio.run(turns(Path(tmp) / "data", args.turns))
        with_metrics, without = both["on"], both["off"]
        per_event = asyncio.run(handler_cost())
        chroma = chroma_compare(Path(tmp), args.queries)
    return {"python": sys.version.split()[0], "turns": args.turns, "queries": args.queries,
            "turn_with_metrics": with_metrics, "turn_without_metrics": without,
            "metrics_cost_per_turn_ms": with_metrics["mean_ms"] - without["mean_ms"],
            "metrics_handler_us_per_event": per_event, "chroma": chroma}


def print_table(r: dict[str, Any]) -> None:
    w, wo = r["turn_with_metrics"], r["turn_without_metrics"]
    print(f"ops benchmark (python {r['python']}, {r['turns']} offline text turns, {r['queries']} searches)")
    print(f"{'':34} {'mean ms':>9} {'p50 ms':>9} {'p95 ms':>9}")
    print(f"{'text turn, metrics on':34} {w['mean_ms']:9.2f} {w['p50_ms']:9.2f} {w['p95_ms']:9.2f}")
    print(f"{'text turn, metrics off':34} {wo['mean_ms']:9.2f} {wo['p50_ms']:9.2f} {wo['p95_ms']:9.2f}")
    print(f"metrics: {r['metrics_cost_per_turn_ms']:+.3f} ms per turn (difference of means), "
          f"{r['metrics_handler_us_per_event']:.2f} µs per observed event, "
          f"/metrics rendered in {w['render_ms']:.2f} ms")
    c = r["chroma"]
    for key, label in (("embedded", "search, embedded Chroma"), ("server", "search, Chroma server (loopback)")):
        print(f"{label:34} {c[key]['mean_ms']:9.2f} {c[key]['p50_ms']:9.2f} {c[key]['p95_ms']:9.2f}")
    print(f"replica stamp check (no change): {c['stamp_check_ms']:.2f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--queries", type=int, default=300)
    result = main(parser.parse_args())
    print_table(result)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ops.json").write_text(json.dumps(result, indent=2))
    print(f"wrote {RESULTS / 'ops.json'}")
