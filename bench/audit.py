"""Audit-log benchmark: what a chained, fsynced record costs a turn, and how fast a log verifies.

Scenarios, each writing ``--records`` records of a typical answer's size (about 1 KB: text, citations, timings)
into a fresh folder on the disk of ``--dir``:
- one writer with ``audit.fsync`` on (the default: the record and HEAD are fsynced before ``write`` returns);
- the same with ``audit.fsync`` off (the operating system flushes later; a killed server loses nothing, a power
  cut the last seconds);
- the same with ``audit.signing_key`` (HMAC-SHA256);
- four threads writing at once with fsync on (one log, one lock; their fsyncs overlap: group commit);
- ``fay audit verify`` of the fsync log (records per second);
- with ``--postgres``, the same record in PostgreSQL (``FAY_AUDIT__URL``): one writer, and four threads on two
  connections (two nodes writing one chain, in turn on the head row's lock), then ``verify`` of the table. The
  benchmark starts a throw-away cluster on loopback (``fay_core.testing_postgres``, ``fsync=off`` there: this
  measures the round trips and the lock, not the database's disk).

Latency is ``AuditLog.write`` wall time per record: p50, p95, p99 and max in ms. Prints a table and writes
``bench/results/audit.json``.

    python bench/audit.py [--records 400] [--dir bench/results] [--postgres]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fay_core.audit import AuditLog  # noqa: E402
from fay_core.audit_chain import verify  # noqa: E402
from fay_core.settings import AuditSettings  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def _record(i: int) -> dict[str, Any]:
    return {
        "session": f"s{i % 7}", "persona": "bank_teller_zh", "persona_version": "3f2a9c1e", "turn": i, "kind": "answer",
        "text": "您好，信用卡挂失请拨打客服热线，或在手机银行中冻结卡片。" * 6, "heard": None, "answered_by": "llm",
        "interrupted": False, "error": None,
        "citations": [{"source": "faq/cards.md", "section": "挂失", "score": 0.91}] * 3, "tools": [],
        "latency_ms": {"retrieved": 12.3, "first_token": 410.2, "first_audio": 702.9, "finished": 2210.4},
    }


def _summary(name: str, lat: list[float], elapsed: float) -> dict[str, Any]:
    return {"scenario": name, "records": len(lat), "records_per_s": len(lat) / elapsed,
            "p50_ms": _pct(lat, 0.5) * 1e3, "p95_ms": _pct(lat, 0.95) * 1e3, "p99_ms": _pct(lat, 0.99) * 1e3,
            "max_ms": max(lat) * 1e3}


def single(folder: Path, name: str, records: int, settings: AuditSettings) -> dict[str, Any]:
    log = AuditLog(folder, settings)
    lat: list[float] = []
    start = time.perf_counter()
    for i in range(records):
        t = time.perf_counter()
        log.write(_record(i))
        lat.append(time.perf_counter() - t)
    return _summary(name, lat, time.perf_counter() - start)


def threads(folder: Path, name: str, records: int, count: int) -> dict[str, Any]:
    log = AuditLog(folder, AuditSettings())
    lat: list[float] = []
    lock = threading.Lock()

    def run(k: int) -> None:
        mine = []
        for i in range(records // count):
            t = time.perf_counter()
            log.write(_record(k * records + i))
            mine.append(time.perf_counter() - t)
        with lock:
            lat.extend(mine)

    workers = [threading.Thread(target=run, args=(k,)) for k in range(count)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return _summary(name, lat, time.perf_counter() - start)


def postgres(records: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The PostgreSQL rows: one writer, two nodes x two threads, and verify (see the module docstring)."""
    from fay_core.audit_pg import PgAuditLog
    from fay_core.pg import Database
    from fay_core.testing_postgres import Postgres

    with Postgres() as pg:
        dbs = [Database(pg.url), Database(pg.url)]
        logs = [PgAuditLog(db, AuditSettings()) for db in dbs]
        logs[0].write(_record(0))  # the tables are created on the first write: not measured
        lat: list[float] = []
        start = time.perf_counter()
        for i in range(records):
            t = time.perf_counter()
            logs[0].write(_record(i))
            lat.append(time.perf_counter() - t)
        rows = [_summary("postgres: 1 writer", lat, time.perf_counter() - start)]
        lat = []
        lock = threading.Lock()

        def run(k: int) -> None:
            mine = []
            for i in range(records // 4):
                t = time.perf_counter()
                logs[k % 2].write(_record(k * records + i))
                mine.append(time.perf_counter() - t)
            with lock:
                lat.extend(mine)

        workers = [threading.Thread(target=run, args=(k,)) for k in range(4)]
        start = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        rows.append(_summary("postgres: 2 nodes x 2 threads", lat, time.perf_counter() - start))
        start = time.perf_counter()
        checked = logs[1].verify()
        took = time.perf_counter() - start
        assert checked.ok, checked.problem
        for db in dbs:
            db.close()
    return rows, {"records": checked.records, "records_per_s": checked.records / took}


def main(args: argparse.Namespace) -> dict[str, Any]:
    args.dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="audit-bench-", dir=args.dir))
    try:
        rows = [
            single(work / "fsync", "1 writer, fsync on (default)", args.records, AuditSettings()),
            single(work / "nofsync", "1 writer, fsync off", args.records, AuditSettings(fsync=False)),
            single(work / "signed", "1 writer, fsync on, HMAC key", args.records,
                   AuditSettings(signing_key=SecretStr("bench-key-0123456789"))),
            threads(work / "threads", "4 threads, fsync on", args.records, 4),
        ]
        start = time.perf_counter()
        checked = verify(work / "fsync")
        took = time.perf_counter() - start
        assert checked.ok, checked.summary()
        line_bytes = sum(p.stat().st_size for p in (work / "fsync").glob("*.jsonl"))
        pg_verify = None
        if args.postgres:
            pg_rows, pg_verify = postgres(args.records)
            rows += pg_rows
        return {
            "python": platform.python_version(), "machine": platform.machine(), "dir": str(args.dir.resolve()),
            "records": args.records, "bytes_per_record": line_bytes / args.records,
            "writes": rows, "verify": {"records": checked.records, "records_per_s": checked.records / took},
            "postgres_verify": pg_verify,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def print_table(r: dict[str, Any]) -> None:
    print(f"audit benchmark (python {r['python']}, {r['records']} records of {r['bytes_per_record']:.0f} bytes, "
          f"disk of {r['dir']})")
    print(f"{'scenario':32} {'records/s':>10} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for w in r["writes"]:
        print(f"{w['scenario']:32} {w['records_per_s']:10,.0f} {w['p50_ms']:8.2f} {w['p95_ms']:8.2f} "
              f"{w['p99_ms']:8.2f} {w['max_ms']:8.2f}")
    print(f"{'fay audit verify':32} {r['verify']['records_per_s']:10,.0f}")
    if r.get("postgres_verify"):
        print(f"{'fay audit verify (postgres)':32} {r['postgres_verify']['records_per_s']:10,.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=400)
    parser.add_argument("--dir", type=Path, default=RESULTS, help="a folder on the disk to measure")
    parser.add_argument("--postgres", action="store_true", help="also measure the record in PostgreSQL (a cluster "
                        "the benchmark starts on loopback: needs Debian's postgresql)")
    result = main(parser.parse_args())
    print_table(result)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "audit.json").write_text(json.dumps(result, indent=2))
    print(f"wrote {RESULTS / 'audit.json'}")
