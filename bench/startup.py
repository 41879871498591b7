"""Cold start: time from launching ``fay run`` to a healthy ``/health``, and to the first answered question.

Each run uses a fresh data folder (so first-use work such as knowledge ingestion is included in "first answer").
Prints a table and writes ``bench/results/startup.json``.

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


def one_run(question: str) -> dict[str, float]:
    port = _free_port()
    with tempfile.TemporaryDirectory() as data:
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
    runs = [one_run(args.question) for _ in range(args.runs)]
    result = {
        "runs": runs,
        "healthy_s_median": sorted(r["healthy_s"] for r in runs)[len(runs) // 2],
        "first_answer_s_median": sorted(r["first_answer_s"] for r in runs)[len(runs) // 2],
    }
    print(f"{'run':>4} {'healthy s':>10} {'first answer s':>15} {'(turn s)':>9}")
    for i, r in enumerate(runs, 1):
        print(f"{i:>4} {r['healthy_s']:10.2f} {r['first_answer_s']:15.2f} {r['first_answer_turn_s']:9.2f}")
    print(f"median: healthy {result['healthy_s_median']:.2f} s, first answer {result['first_answer_s_median']:.2f} s")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "startup.json").write_text(json.dumps(result, indent=2))
    print(f"wrote {RESULTS / 'startup.json'}")


if __name__ == "__main__":
    main()
