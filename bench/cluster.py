"""Cluster benchmark: N ``fay run`` nodes on loopback with a real Redis and a Chroma server.

    python bench/cluster.py                      # 3 nodes, 9 sessions through the entry node, 40 turns each way
    python bench/cluster.py --nodes 2 --turns 20

What it measures (offline text turns, bank_teller_en over the demo bank's English knowledge, ingested once with
``fay kb ingest`` into the Chroma server before the nodes start):

- placement: ``--sessions`` sessions created through node 0 (the entry node); how many each node serves;
- the hop: the same questions to sessions on other nodes, sent to their owner directly and through the entry node
  (which forwards them and relays the answer stream), alternating; time to the first byte of the answer stream
  and to its end, and of a ``GET /api/sessions/<id>`` (history), p50/p95; the difference is what forwarding costs;
- a node kill: ``kill -9`` of one non-entry node; how many sessions it took with it, how long until a new session
  through the entry node succeeds, how many creations failed meanwhile, and how long until a request for one of
  its sessions answers ``410`` (before: ``503`` with ``Retry-After``), against ``cluster.expiry_s``.

Prints a table and writes ``bench/results/cluster.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CHROMA = Path(sys.executable).with_name("chroma")
QUESTIONS = ["What are your opening hours?", "I lost my card", "How much does the Harbor Saver pay?",
             "Can I raise my card limit?", "How do I open a savings account?"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _call(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, str], str, float]:
    """Status, headers, body and the seconds to the first byte of the body."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            first = r.read(1)
            ttfb = time.perf_counter() - started
            return r.status, dict(r.headers), (first + r.read()).decode(), ttfb
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode(), time.perf_counter() - started
    except OSError as exc:
        return 0, {}, str(exc), time.perf_counter() - started


def _wait(url: str, proc: subprocess.Popen[Any], what: str, limit_s: float = 300) -> None:
    deadline = time.monotonic() + limit_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{what} did not start") from None
            time.sleep(0.2)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--sessions", type=int, default=9, help="sessions created through the entry node")
    ap.add_argument("--turns", type=int, default=40, help="timed turns each way (direct, forwarded)")
    ap.add_argument("--heartbeat", type=float, default=1.0, help="cluster.heartbeat_s")
    ap.add_argument("--expiry", type=float, default=3.0, help="cluster.expiry_s")
    args = ap.parse_args()
    if args.nodes < 2:
        raise SystemExit("--nodes must be at least 2 (an entry node and one it forwards to)")
    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        raise SystemExit("redis-server is not installed (make system-deps)")
    tmp = Path(tempfile.mkdtemp(prefix="fay-bench-cluster-"))
    procs: list[subprocess.Popen[Any]] = []
    try:
        redis_port, chroma_port = _free_port(), _free_port()
        procs.append(subprocess.Popen([redis_bin, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                       "--appendonly", "no", "--dir", str(tmp)], stdout=subprocess.DEVNULL))
        chroma = subprocess.Popen([str(CHROMA), "run", "--host", "127.0.0.1", "--port", str(chroma_port), "--path",
                                   str(tmp / "chroma")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(chroma)
        _wait(f"http://127.0.0.1:{chroma_port}/api/v2/heartbeat", chroma, "chroma run")
        base = {k: v for k, v in os.environ.items() if not k.startswith("FAY_")}
        base.update(FAY_CONFIG="/nonexistent", LITELLM_LOCAL_MODEL_COST_MAP="True",
                    PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "plugins")]),
                    FAY_KNOWLEDGE__CHROMA_URL=f"http://127.0.0.1:{chroma_port}",
                    FAY_CLUSTER__REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
                    FAY_CLUSTER__HEARTBEAT_S=str(args.heartbeat), FAY_CLUSTER__EXPIRY_S=str(args.expiry),
                    FAY_SERVER__MAX_SESSIONS="1000")
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "fay_core", "kb", "ingest", str(ROOT / "knowledge/demo_bank/en"), "-c",
                        "harbor-bank-en"], env={**base, "FAY_DATA_DIR": str(tmp / "ingest")}, check=True,
                       stdout=subprocess.DEVNULL)
        ingest_s = time.perf_counter() - started
        urls, nodes = [], []
        for i in range(args.nodes):
            port = _free_port()
            url = f"http://127.0.0.1:{port}"
            env = {**base, "FAY_DATA_DIR": str(tmp / f"node{i}"), "FAY_CLUSTER__NODE_URL": url}
            with open(tmp / f"node{i}.log", "w") as log:
                nodes.append(subprocess.Popen([sys.executable, "-m", "fay_core", "run", "--port", str(port)], env=env,
                                              cwd=tmp, stdout=subprocess.DEVNULL, stderr=log))
            procs.append(nodes[-1])
            urls.append(url)
        started = time.perf_counter()
        for i, url in enumerate(urls):
            _wait(f"{url}/ready", nodes[i], f"node {i}")
        ready_s = time.perf_counter() - started
        entry = urls[0]

        # placement
        owner: dict[str, str] = {}
        for _ in range(args.sessions):
            status, _, body, _ = _call("POST", f"{entry}/api/sessions", {"persona": "bank_teller_en"})
            assert status == 201, body
            created = json.loads(body)
            owner[created["session_id"]] = created["node"]
        per_node = {url: sum(1 for n in owner.values() if n == url) for url in urls}

        # the hop: one remote session, its owner directly against the entry node forwarding
        remote = [sid for sid, n in owner.items() if n != entry]
        took: dict[str, dict[str, list[float]]] = {way: {"ttfb": [], "total": [], "history": []}
                                                   for way in ("direct", "forwarded")}
        for i in range(args.turns + 2):  # two warm-up rounds
            sid = remote[i % len(remote)]
            q = QUESTIONS[i % len(QUESTIONS)]
            ways = [("direct", owner[sid]), ("forwarded", entry)]
            for way, url in ways if i % 2 else ways[::-1]:
                t0 = time.perf_counter()
                status, headers, body, ttfb = _call("POST", f"{url}/api/sessions/{sid}/messages", {"text": q})
                total = time.perf_counter() - t0
                assert status == 200 and headers.get("X-Fay-Node") == owner[sid] and "event: answer" in body, body
                t0 = time.perf_counter()
                status, headers, body, _ = _call("GET", f"{url}/api/sessions/{sid}")
                read = time.perf_counter() - t0
                assert status == 200 and headers.get("X-Fay-Node") == owner[sid], body
                if i >= 2:
                    took[way]["ttfb"].append(ttfb * 1000)
                    took[way]["total"].append(total * 1000)
                    took[way]["history"].append(read * 1000)

        # a node kill
        victim = next(url for url in urls[1:] if per_node[url])
        victim_proc = nodes[urls.index(victim)]
        lost = [sid for sid, n in owner.items() if n == victim]
        victim_proc.send_signal(signal.SIGKILL)
        victim_proc.wait(10)
        killed = time.perf_counter()
        failed = 0
        while True:
            status, _, body, _ = _call("POST", f"{entry}/api/sessions", {"persona": "bank_teller_en"})
            if status == 201:
                break
            failed += 1
        new_session_s = time.perf_counter() - killed
        answers: dict[int, int] = {}
        while True:
            status, _, body, _ = _call("POST", f"{entry}/api/sessions/{lost[0]}/messages", {"text": QUESTIONS[0]})
            answers[status] = answers.get(status, 0) + 1
            if status == 410 or time.perf_counter() - killed > args.expiry * 5:
                break
            time.sleep(0.05)
        gone_s = time.perf_counter() - killed
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)

    stats = {way: {f"{k}_{q}_ms": pct(v, p) for k, v in d.items() for q, p in (("p50", 50), ("p95", 95))}
             for way, d in took.items()}
    hop = {f"{k}_ms": stats["forwarded"][f"{k}_ms"] - stats["direct"][f"{k}_ms"]
           for k in ("ttfb_p50", "ttfb_p95", "total_p50", "total_p95", "history_p50", "history_p95")}
    result = {
        "nodes": args.nodes, "sessions": args.sessions, "turns": args.turns,
        "heartbeat_s": args.heartbeat, "expiry_s": args.expiry,
        "ingest_s": round(ingest_s, 1), "nodes_ready_s": round(ready_s, 1),
        "sessions_per_node": list(per_node.values()),
        "turns_direct": stats["direct"], "turns_forwarded": stats["forwarded"], "hop_cost": hop,
        "kill": {"sessions_lost": len(lost), "new_session_s": round(new_session_s, 3),
                 "creations_failed": failed, "gone_410_s": round(gone_s, 3),
                 "answers_until_410": {str(k): v for k, v in sorted(answers.items())}},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_1min": round(os.getloadavg()[0], 1)},
    }
    print(f"{args.nodes} nodes on loopback, Redis + Chroma server; {args.sessions} sessions through node 0; "
          f"{args.turns} timed text turns each way")
    print(f"sessions per node: {result['sessions_per_node']}   (ingest {ingest_s:.1f} s, nodes ready in "
          f"{ready_s:.1f} s)")
    print(f"{'':<20}{'turn: first byte p50':>21}{'p95':>9}{'whole answer p50':>18}{'p95':>9}"
          f"{'GET history p50':>17}{'p95':>9}")
    rows = [("direct (owner)", stats["direct"]), ("forwarded (entry)", stats["forwarded"]),
            ("hop cost", hop)]
    for name, row in rows:
        print(f"{name:<20}{row['ttfb_p50_ms']:>18.1f} ms{row['ttfb_p95_ms']:>6.1f} ms{row['total_p50_ms']:>15.1f} ms"
              f"{row['total_p95_ms']:>6.1f} ms{row['history_p50_ms']:>14.1f} ms{row['history_p95_ms']:>6.1f} ms")
    k = result["kill"]
    print(f"kill -9 of a node: {k['sessions_lost']} sessions lost; a new session succeeded after "
          f"{k['new_session_s'] * 1000:.0f} ms ({k['creations_failed']} failed); its sessions answered 410 after "
          f"{k['gone_410_s']:.2f} s (expiry {args.expiry:g} s; answers before: {k['answers_until_410']})")
    print(f"load average (1 min) at the end: {result['machine']['load_1min']} on {os.cpu_count()} cores")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cluster.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
