"""Event-bus benchmark: throughput and publish→deliver latency.

Scenarios:
- fan-out to 1, 4 and 16 subscribers (deliveries per second, latency p50/p99);
- a pipeline of 5 pass-through stages, each forwarding the frame to the next stage's bus (comparable to
  pipecat's "frames through five pass-through processors": µs per frame per stage), and the same with each stage
  building a new event (a transforming processor);
- 100 concurrent sessions, each with its own bus and 4 subscribers, publishing at once.

Latency is measured per event from its creation (``Event.ts``, monotonic) to the moment its handler runs, with
events published in bursts of ``--burst`` (default 1: one event, then yield to the loop, which is what a live
audio frame sees). Prints a table and writes ``bench/results/bus.json``.

    python bench/bus.py [--events 200000] [--burst 1]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fay_core.bus import Bus  # noqa: E402
from fay_core.events import Event  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True, slots=True, kw_only=True)
class Frame(Event):
    n: int = 0


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def fanout(subscribers: int, events: int, burst: int) -> dict[str, float]:
    """Deliveries/s and latency for one bus with ``subscribers`` subscribers."""
    bus = Bus("bench")
    lat: list[float] = []
    now = time.monotonic

    def record(e: Frame) -> None:
        lat.append(now() - e.ts)

    def count(e: Frame) -> None:
        pass

    for i in range(subscribers):
        bus.subscribe(record if i == 0 else count, Frame, name=f"sub{i}", maxsize=burst * 4 + 16)
    await asyncio.sleep(0)
    gc.collect()
    start = time.perf_counter()
    for i in range(0, events, burst):
        for j in range(burst):
            bus.publish(Frame(n=i + j))
        await asyncio.sleep(0)
    await bus.idle(timeout=60)
    elapsed = time.perf_counter() - start
    dropped = sum(s.dropped for s in bus.subscriptions())
    await bus.close()
    return {
        "subscribers": subscribers,
        "events": events,
        "deliveries_per_s": events * subscribers / elapsed,
        "events_per_s": events / elapsed,
        "us_per_delivery": elapsed / (events * subscribers) * 1e6,
        "p50_us": _pct(lat, 0.50) * 1e6,
        "p99_us": _pct(lat, 0.99) * 1e6,
        "dropped": dropped,
    }


async def pipeline(stages: int, frames: int, burst: int, *, new_event_per_stage: bool) -> dict[str, float]:
    """Frames through ``stages`` pass-through subscribers.

    With ``new_event_per_stage`` every stage builds a new event of the next stage's type on one bus (a processor
    that transforms); otherwise each stage forwards the same event to the next stage's bus (pipecat's
    pass-through processor).
    """
    lat: list[float] = []
    done = 0

    def sink(e: Frame) -> None:
        nonlocal done
        done += 1
        lat.append(time.monotonic() - e.ts)

    size = burst * 4 + 16
    if new_event_per_stage:
        bus = Bus("pipe")
        buses = [bus]
        types = [
            dataclass(frozen=True, slots=True, kw_only=True)(type(f"Stage{i}", (Frame,), {})) for i in range(stages + 1)
        ]

        def transform(out_type: type[Frame]):  # type: ignore[no-untyped-def]
            publish = bus.publish
            return lambda e: publish(out_type(n=e.n, ts=e.ts))

        for i in range(stages):
            bus.subscribe(transform(types[i + 1]), types[i], name=f"stage{i}", maxsize=size)
        bus.subscribe(sink, types[stages], name="sink", maxsize=size)
        entry, first = bus, types[0]
    else:
        buses = [Bus(f"stage{i}") for i in range(stages + 1)]
        for i in range(stages):
            buses[i].subscribe(buses[i + 1].publish, Frame, name=f"stage{i}", maxsize=size)
        buses[stages].subscribe(sink, Frame, name="sink", maxsize=size)
        entry, first = buses[0], Frame
    await asyncio.sleep(0)
    gc.collect()
    start = time.perf_counter()
    for i in range(0, frames, burst):
        for j in range(burst):
            entry.publish(first(n=i + j))
        await asyncio.sleep(0)
    for b in buses:
        await b.idle(timeout=60)
    elapsed = time.perf_counter() - start
    for b in buses:
        await b.close()
    return {
        "stages": stages,
        "frames": frames,
        "new_event_per_stage": new_event_per_stage,
        "frames_per_s": done / elapsed,
        "us_per_frame_per_stage": elapsed / (done * stages) * 1e6 if done else float("nan"),
        "p50_us": _pct(lat, 0.5) * 1e6,
        "p99_us": _pct(lat, 0.99) * 1e6,
        "delivered": done,
    }


async def sessions(count: int, subscribers: int, events_per_session: int, burst: int) -> dict[str, float]:
    """``count`` buses publishing concurrently."""
    lat: list[float] = []
    buses = []
    for s in range(count):
        bus = Bus(f"s{s}")
        for i in range(subscribers):
            if i == 0:
                bus.subscribe(lambda e: lat.append(time.monotonic() - e.ts), Frame, maxsize=burst * 4 + 16)
            else:
                bus.subscribe(lambda e: None, Frame, maxsize=burst * 4 + 16)
        buses.append(bus)

    async def produce(bus: Bus) -> None:
        for i in range(0, events_per_session, burst):
            for j in range(burst):
                bus.publish(Frame(n=i + j))
            await asyncio.sleep(0)

    await asyncio.sleep(0)
    gc.collect()
    start = time.perf_counter()
    await asyncio.gather(*(produce(b) for b in buses))
    for b in buses:
        await b.idle(timeout=60)
    elapsed = time.perf_counter() - start
    for b in buses:
        await b.close()
    total = count * events_per_session
    return {
        "sessions": count,
        "subscribers_per_session": subscribers,
        "events_per_s": total / elapsed,
        "deliveries_per_s": total * subscribers / elapsed,
        "p50_us": _pct(lat, 0.5) * 1e6,
        "p99_us": _pct(lat, 0.99) * 1e6,
    }


async def main(args: argparse.Namespace) -> dict[str, object]:
    out: dict[str, object] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "events": args.events,
        "burst": args.burst,
    }
    out["fanout"] = [await fanout(n, args.events, args.burst) for n in (1, 4, 16)]
    out["pipeline_5_passthrough"] = await pipeline(5, args.events, args.burst, new_event_per_stage=False)
    out["pipeline_5_transform"] = await pipeline(5, args.events, args.burst, new_event_per_stage=True)
    out["sessions_100"] = await sessions(100, 4, max(200, args.events // 100), args.burst)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def print_table(r: dict[str, object]) -> None:
    print(f"bus benchmark (python {r['python']}, burst {r['burst']})")
    print(f"{'scenario':34} {'events/s':>12} {'deliveries/s':>13} {'µs/hop':>8} {'p50 µs':>8} {'p99 µs':>8}")
    for f in r["fanout"]:  # type: ignore[union-attr]
        print(f"{'fan-out, ' + str(f['subscribers']) + ' subscriber(s)':34} {f['events_per_s']:12,.0f} "
              f"{f['deliveries_per_s']:13,.0f} {f['us_per_delivery']:8.2f} {f['p50_us']:8.1f} {f['p99_us']:8.1f}")
    for key, label in (
        ("pipeline_5_passthrough", "pipeline, 5 pass-through stages"),
        ("pipeline_5_transform", "pipeline, 5 stages, new event each"),
    ):
        p = r[key]
        print(f"{label:34} {p['frames_per_s']:12,.0f} {'':>13} {p['us_per_frame_per_stage']:8.2f} "  # type: ignore[index]
              f"{p['p50_us']:8.1f} {p['p99_us']:8.1f}")  # type: ignore[index]
    s = r["sessions_100"]
    print(f"{'100 sessions x 4 subscribers':34} {s['events_per_s']:12,.0f} {s['deliveries_per_s']:13,.0f} "  # type: ignore[index]
          f"{'':>8} {s['p50_us']:8.1f} {s['p99_us']:8.1f}")  # type: ignore[index]
    print(f"peak RSS {r['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--burst", type=int, default=1)
    args = parser.parse_args()
    result = asyncio.run(main(args))
    print_table(result)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bus.json").write_text(json.dumps(result, indent=2))
    print(f"wrote {RESULTS / 'bus.json'}")
