"""Cold start: time from launching ``fay run`` to a healthy ``/health``, and to the first answered question.

The first run starts on an empty data folder (so first-use work, knowledge ingestion above all, is in its "first
answer"); later runs reuse that folder, as a restarted server does. Prints a table and writes
``bench/results/startup.json``.

    python bench/startup.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_run(question: str, data: str) -> dict[str, float]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAY_")}
    env["FAY_DATA_DIR"] = data
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fay_core", "run", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError("fay run exited during start-up") from None
                time.sleep(0.02)
        healthy = time.monotonic() - started
        req = urllib.request.Request(f"{base}/api/sessions", data=b"{}", method="POST")
        with urllib.request.urlopen(req, timeout=120) as r:
            sid = json.load(r)["session_id"]
        body = json.dumps({"text": question}).encode()
        asked = time.monotonic()
        req = urllib.request.Request(f"{base}/api/sessions/{sid}/messages", data=body, method="POST")
        with urllib.request.urlopen(req, timeout=300) as r:
            r.read()
        answered = time.monotonic()
    finally:
        proc.terminate()
        proc.wait(30)
    return {"healthy_s": healthy, "first_answer_s": answered - started, "first_answer_turn_s": answered - asked}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--question", default="What are your opening hours?")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        runs = [one_run(args.question, data) for _ in range(args.runs)]
    warm = runs[1:] or runs
    result = {
        "runs": runs,
        "healthy_s_median": sorted(r["healthy_s"] for r in runs)[len(runs) // 2],
        "empty_data_first_answer_s": runs[0]["first_answer_s"],
        "restart_first_answer_s_median": sorted(r["first_answer_s"] for r in warm)[len(warm) // 2],
    }
    print(f"{'run':>4} {'data folder':>12} {'healthy s':>10} {'first answer s':>15} {'(turn s)':>9}")
    for i, r in enumerate(runs, 1):
        print(f"{i:>4} {'empty' if i == 1 else 'kept':>12} {r['healthy_s']:10.2f} {r['first_answer_s']:15.2f} "
              f"{r['first_answer_turn_s']:9.2f}")
    print(f"median healthy {result['healthy_s_median']:.2f} s; first answer "
          f"{result['empty_data_first_answer_s']:.2f} s on an empty data folder, "
          f"{result['restart_first_answer_s_median']:.2f} s after a restart")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "startup.json").write_text(json.dumps(result, indent=2))
    print(f"wrote {RESULTS / 'startup.json'}")


if __name__ == "__main__":
    main()
