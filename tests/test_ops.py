"""Operations: ``GET /metrics`` counts exactly, turns become OpenTelemetry traces, and ``fay run`` drains on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from fay_core.app import Fay
from fay_core.bus import Bus
from fay_core.events import Event
from fay_core.load import LoopMonitor
from fay_core.metrics import Metrics
from fay_core.persona import PersonaStore
from fay_core.server import create_app
from fay_core.settings import Settings
from fay_core.testing import fay_env, start_fay_run, test_settings
from fay_core.tracing import TurnTracer

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ["What are your opening hours?", "I lost my card", "How do I fly to the moon?"]


@pytest.fixture
async def served(settings: Settings) -> AsyncIterator[tuple[ClientSession, Fay]]:
    fay = Fay(settings)
    server = TestServer(create_app(fay), host="127.0.0.1")
    await server.start_server()
    async with ClientSession(base_url=str(server.make_url(""))) as http:
        yield http, fay
    await server.close()


async def _session(http: ClientSession) -> str:
    async with http.post("/api/sessions", json={"persona": "bank_teller_en"}) as r:
        assert r.status == 201, await r.text()
        return str((await r.json())["session_id"])


async def _ask(http: ClientSession, sid: str, text: str) -> str:
    async with http.post(f"/api/sessions/{sid}/messages", json={"text": text}) as r:
        assert r.status == 200
        return await r.text()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_count_the_turns_sessions_and_stages_exactly(served) -> None:
    http, fay = served
    first, second = await _session(http), await _session(http)
    for q in QUESTIONS:
        await _ask(http, first, q)
    await _ask(http, second, QUESTIONS[0])
    async with http.delete(f"/api/sessions/{second}") as r:
        assert r.status == 200
    async with http.get("/metrics") as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
        got = _samples(await r.text())
    turn = (("language", "en"), ("outcome", "{}"), ("persona", "bank_teller_en"))

    def turns(outcome: str) -> float:
        return got.get(("fay_turns_total", tuple((k, outcome if v == "{}" else v) for k, v in turn)), 0.0)

    assert turns("answered") == 3 and turns("declined") == 1  # the moon is not in the bank's knowledge
    assert turns("interrupted") == 0 and turns("error") == 0
    assert got[("fay_sessions_created_total", (("persona", "bank_teller_en"),))] == 2
    assert got[("fay_sessions_active", ())] == 1
    assert got[("fay_stage_seconds_count", (("stage", "retrieved"),))] == 4
    assert got[("fay_stage_seconds_count", (("stage", "turn_finished"),))] == 4
    assert got[("fay_draining", ())] == 0
    # a second runtime in this process counts on its own (each has its registry)
    assert _samples(Fay(fay.settings).metrics.render().decode())[("fay_sessions_active", ())] == 0


async def test_metrics_count_errors_and_the_events_a_full_queue_drops() -> None:
    metrics = Metrics()
    bus = Bus("s1", on_drop=metrics.on_drop)
    metrics.observe(bus, PersonaStore(ROOT / "personas").get("bank_teller_en"))
    gate = asyncio.Event()

    async def slow(_event: Event) -> None:
        await gate.wait()

    bus.subscribe(slow, name="slow", maxsize=2)
    await asyncio.sleep(0)
    for _ in range(7):  # its task does not run between these publishes: two are queued, five dropped
        bus.publish(Event(session_id="s1"))
    gate.set()
    await bus.idle()
    await bus.close()
    got = _samples(metrics.render().decode())
    assert got[("fay_bus_dropped_events_total", (("subscriber", "slow"),))] == 5
    assert got[("fay_errors_total", (("source", "slow"),))] == 1  # the bus reports the first drop as an error


def _hold_the_loop(fay: Fay, times: int, hold_s: float) -> Any:
    """What an overloaded node's event loop feels: held ``hold_s`` at a time, between the monitor's wake-ups."""

    async def hold() -> None:
        for _ in range(times):
            await asyncio.sleep(fay.load.interval_s * 1.5)
            time.sleep(hold_s)  # noqa: ASYNC251 (blocking the loop is the point)

    return hold()


async def test_a_monitor_reads_how_late_the_loop_runs() -> None:
    monitor = LoopMonitor(interval_s=0.02, window_s=1.0)
    assert monitor.lag_ms() == 0.0 and not monitor.busy(50)  # no sample yet
    monitor.start()
    try:
        await asyncio.sleep(0.3)
        quiet = monitor.lag_ms()
        for _ in range(6):
            await asyncio.sleep(0.03)
            time.sleep(0.25)  # noqa: ASYNC251 (blocking the loop is the point)
        held = monitor.lag_ms()
        assert held >= 200 > quiet, (quiet, held)
        assert monitor.busy(100) and not monitor.busy(300) and not monitor.busy(0)  # 0: the check is off
        await asyncio.sleep(1.2)  # the late wake-ups leave the window
        assert monitor.lag_ms() < 200 and not monitor.busy(200)
    finally:
        await monitor.stop()


async def test_a_busy_node_refuses_new_sessions_and_serves_the_open_ones(tmp_path: Path) -> None:
    fay = Fay(test_settings(tmp_path / "data", personas_dir=ROOT / "personas", server={"max_loop_lag_ms": 100}))
    fay.load.window_s = 1.5
    server = TestServer(create_app(fay), host="127.0.0.1")
    await server.start_server()
    try:
        async with ClientSession(base_url=str(server.make_url(""))) as http:
            sid = await _session(http)
            await _hold_the_loop(fay, times=6, hold_s=0.3)
            assert fay.busy
            async with http.post("/api/sessions", json={"persona": "bank_teller_en"}) as r:
                refused, status, retry = await r.json(), r.status, r.headers.get("Retry-After")
            assert status == 503 and retry == "2" and "busy" in refused["error"], (status, refused)
            assert "Monday to Friday" in await _ask(http, sid, QUESTIONS[0])  # the open session is served
            async with http.get("/metrics") as r:
                families = {f.name: f for f in text_string_to_metric_families(await r.text())}
            refusals = {s.labels["reason"]: s.value for s in families["fay_sessions_refused"].samples
                        if s.name.endswith("_total")}
            assert refusals == {"busy": 1.0}
            assert families["fay_event_loop_lag_seconds"].samples[0].value >= 0.1
            await asyncio.sleep(1.6)  # caught up: sessions start again
            assert not fay.busy
            await _session(http)
    finally:
        await server.close()


async def test_metrics_need_the_token_once_one_is_set(tmp_path: Path) -> None:
    settings = test_settings(tmp_path / "data", personas_dir=ROOT / "personas", server={"token": "s3cret-token"})
    fay = Fay(settings)
    server = TestServer(create_app(fay), host="127.0.0.1")
    await server.start_server()
    try:
        async with ClientSession(base_url=str(server.make_url(""))) as http:
            async with http.get("/metrics") as r:
                assert r.status == 401 and "token" in (await r.json())["error"]
            async with http.get("/metrics", headers={"Authorization": "Bearer s3cret-token"}) as r:
                assert r.status == 200 and "fay_sessions_active" in await r.text()
    finally:
        await server.close()


# --- traces -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("personal", [False, True])
async def test_each_turn_is_a_trace_with_its_stages_and_no_user_text_by_default(served, personal: bool) -> None:
    http, fay = served
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    fay.assembly.tracer = TurnTracer(provider.get_tracer("test"), personal_data=personal,
                                     redactor=fay.assembly.redactor)
    sid = await _session(http)
    question = "I lost my card 4111 1111 1111 1111"
    await _ask(http, sid, question)
    await fay.get(sid).bus.idle()
    spans = exporter.get_finished_spans()
    turns = [s for s in spans if s.name == "fay.turn"]
    assert len(turns) == 1
    turn = turns[0]
    stages = {s.name: s for s in spans if s.parent is not None and s.parent.span_id == turn.context.span_id}
    assert {"fay.stage.retrieved", "fay.stage.turn_finished"} <= set(stages)
    assert all(s.context.trace_id == turn.context.trace_id for s in stages.values())
    assert turn.start_time <= stages["fay.stage.retrieved"].end_time <= stages["fay.stage.turn_finished"].end_time
    assert turn.attributes["fay.outcome"] == "answered" and turn.attributes["fay.persona"] == "bank_teller_en"
    every = json.dumps([dict(s.attributes or {}) for s in spans])
    assert "4111" not in every  # never the card number, with or without personal data
    if personal:
        assert "lost my card" in turn.attributes["fay.personal.question"]
        assert "Freeze the card" in turn.attributes["fay.personal.answer"]
    else:
        assert "lost my card" not in every and not [k for k in turn.attributes if k.startswith("fay.personal")]
    provider.shutdown()


# --- draining `fay run` -------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _call(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, str], Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read().decode()
            status, headers = r.status, dict(r.headers)
    except urllib.error.HTTPError as exc:
        raw, status, headers = exc.read().decode(), exc.code, dict(exc.headers)
    try:
        return status, headers, json.loads(raw)
    except json.JSONDecodeError:
        return status, headers, raw


def _start(tmp_path: Path, **env_extra: str) -> tuple[subprocess.Popen[str], str]:
    return start_fay_run(tmp_path, env=fay_env(tmp_path, **env_extra), wait_for="/ready")


@pytest.mark.slow
def test_sigterm_drains_then_exits_0(tmp_path: Path, seeded_data: Path) -> None:
    proc, base = _start(tmp_path, FAY_SERVER__DRAIN_TIMEOUT_S="60")
    try:
        status, _, created = _call("POST", f"{base}/api/sessions", {})
        assert status == 201
        sid = created["session_id"]
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while (ready := _call("GET", f"{base}/ready"))[0] != 503:
            assert time.monotonic() < deadline, f"/ready did not turn 503 after SIGTERM: {ready}"
            time.sleep(0.05)
        assert "draining" in ready[2]["reason"]
        status, headers, refused = _call("POST", f"{base}/api/sessions", {})
        assert status == 503 and "draining" in refused["error"] and int(headers["Retry-After"]) > 0
        status, _, answer = _call("POST", f"{base}/api/sessions/{sid}/messages", {"text": QUESTIONS[0]})
        assert status == 200 and "Monday to Friday" in answer  # the open session is still served
        assert proc.poll() is None  # ... and waited for
        status, _, _ = _call("DELETE", f"{base}/api/sessions/{sid}")
        assert status == 200
        assert proc.wait(20) == 0  # its last session ended: it exits, long before the drain timeout
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


@pytest.mark.slow
def test_a_drain_times_out_then_exits_0(tmp_path: Path, seeded_data: Path) -> None:
    proc, base = _start(tmp_path, FAY_SERVER__DRAIN_TIMEOUT_S="1.5")
    try:
        assert _call("POST", f"{base}/api/sessions", {})[0] == 201
        stopped = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert time.monotonic() - stopped >= 1.4  # it waited for the open session, then closed it
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
