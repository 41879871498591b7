"""Fuzz the data-channel input path: thousands of generated messages through the parser and a real peer's handler.

``parse_client_message`` must return a message or raise :class:`ProtocolError` (nothing else), and
``Peer._on_message`` on a real session must raise nothing and send exactly one reply (an ``error``, or the
``pong``), as strict JSON an aiortc channel can encode. Prints a summary and writes
``bench/results/fuzz_webrtc.json``::

    python bench/fuzz_webrtc.py [--cases 5000] [--seed 17]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from aiortc import RTCPeerConnection  # noqa: E402
from test_webrtc import serve, webrtc_settings  # noqa: E402
from test_webrtc_input import FakeChannel, messages  # noqa: E402

from fay_core.transport.peer import Peer  # noqa: E402
from fay_core.transport.protocol import ProtocolError, parse_client_message  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "fuzz_webrtc.json"


async def fuzz(cases: int, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        served = await serve(webrtc_settings(Path(tmp), max_bad_messages=10**9))
        session = await served.fay.create_session("web_teller")
        pc = RTCPeerConnection()
        closed: list[str] = []
        peer = Peer(pc, session, served.fay.settings.webrtc, renderer=None, close=closed.append)
        channel = FakeChannel()
        peer.channel = channel  # type: ignore[assignment]
        limit = served.fay.settings.webrtc.max_message_bytes
        outcomes: Counter[str] = Counter()
        failures: list[dict[str, Any]] = []
        parse_s = handle_s = 0.0

        @settings(max_examples=cases, deadline=None, database=None, derandomize=False,
                  suppress_health_check=list(HealthCheck))
        @given(raw=messages)
        def one(raw: str | bytes) -> None:
            nonlocal parse_s, handle_s
            t0 = time.perf_counter()
            try:
                msg = parse_client_message(raw, limit)
                outcome = f"valid {msg.type}"
            except ProtocolError:
                msg, outcome = None, "refused"
            except Exception as exc:  # a bug: recorded, the run goes on
                msg, outcome = None, f"parser raised {type(exc).__name__}"
                failures.append({"raw": ascii(raw)[:200], "error": repr(exc)[:200]})
            parse_s += time.perf_counter() - t0
            outcomes[outcome] += 1
            if msg is not None and msg.type != "ping":
                return  # a valid text starts a turn, a bye closes: not what this measures
            channel.sent.clear()
            t0 = time.perf_counter()
            try:
                peer._on_message(raw)
            except Exception as exc:
                failures.append({"raw": ascii(raw)[:200], "error": f"handler raised {exc!r}"[:200]})
            handle_s += time.perf_counter() - t0
            if len(channel.sent) != 1:
                failures.append({"raw": ascii(raw)[:200], "error": f"{len(channel.sent)} replies"})

        from hypothesis import seed as hypothesis_seed

        hypothesis_seed(seed)(one)()
        await pc.close()
        await served.server.close()
    total = sum(outcomes.values())
    return {
        "cases": total,
        "seed": seed,
        "outcomes": dict(outcomes.most_common()),
        "failures": failures[:50],
        "failure_count": len(failures),
        "peer_closed": closed,
        "parse_us_per_case": round(parse_s / max(total, 1) * 1e6, 1),
        "handle_us_per_case": round(handle_s / max(total, 1) * 1e6, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=17)
    args = ap.parse_args()
    result = asyncio.run(fuzz(args.cases, args.seed))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['cases']} data-channel messages: {result['outcomes']}")
    print(f"parse {result['parse_us_per_case']} us, handler {result['handle_us_per_case']} us per case; "
          f"failures: {result['failure_count']}; written to {RESULTS}")
    if result["failure_count"] or result["peer_closed"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
