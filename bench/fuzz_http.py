"""HTTP fuzz: thousands of generated requests against the real app, counted by answer.

The requests are those of the property test in ``tests/test_http_input.py`` (bodies that are not UTF-8, not
JSON, too deep, with huge integers or lone surrogates; odd charsets, ``Authorization`` and session-secret
headers; absurd session ids and ``/web/`` names), sent to the app served on 127.0.0.1. Each answer is checked as
the test checks it: no 5xx, and a 4xx is ``{"error": "<public message>"}`` without paths or exception reprs.
Unlike the test, a failing case is counted (and the first few kept) instead of stopping the run. At the end a
good request must still be answered. Prints the counts and writes ``bench/results/fuzz_http.json``.

    python bench/fuzz_http.py [--cases 3000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "plugins"), str(ROOT / "tests")]

from hypothesis import HealthCheck, given, seed, settings  # noqa: E402
from hypothesis.errors import HypothesisDeprecationWarning  # noqa: E402

from test_http_input import Case, LiveServer, cases, check_answer, live_settings  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def run(n: int, random_seed: int) -> dict[str, object]:
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    with tempfile.TemporaryDirectory() as tmp, LiveServer(live_settings(Path(tmp) / "data")) as live:

        @seed(random_seed)
        @settings(max_examples=n, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(case=cases(live.anonymous, live.signed_in))
        def fuzz(case: Case) -> None:
            status, content_type, body = live.send(case)
            statuses[status] += 1
            try:
                check_answer(case, status, content_type, body)
            except AssertionError as exc:
                if len(failures) < 10:
                    failures.append(str(exc)[:500])
                statuses[-1] += 1  # failed the property

        started = time.monotonic()
        with warnings.catch_warnings():  # the server thread may touch the global `random` while a case is drawn
            warnings.simplefilter("ignore", HypothesisDeprecationWarning)
            fuzz()
        took = time.monotonic() - started
        still_answers = live.good_request_works()
    sent = sum(v for k, v in statuses.items() if k >= 0)
    return {
        "cases": sent,
        "seconds": round(took, 1),
        "by_status": {str(k): v for k, v in sorted(statuses.items()) if k >= 0},
        "5xx": sum(v for k, v in statuses.items() if k >= 500),
        "property_failures": statuses[-1],
        "first_failures": failures,
        "still_answers_afterwards": still_answers,
        "seed": random_seed,
        "python": platform.python_version(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=3000, help="generated requests to send")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    result = run(args.cases, args.seed)
    print(f"{result['cases']} requests in {result['seconds']} s")
    for status, count in result["by_status"].items():  # type: ignore[attr-defined]
        print(f"  {status}: {count}")
    print(f"5xx: {result['5xx']}  property failures: {result['property_failures']}  "
          f"still answers afterwards: {result['still_answers_afterwards']}")
    for failure in result["first_failures"]:  # type: ignore[attr-defined]
        print("  FAILED", failure)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fuzz_http.json").write_text(json.dumps(result, indent=2) + "\n")
    ok = result["5xx"] == 0 and result["property_failures"] == 0 and result["still_answers_afterwards"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
