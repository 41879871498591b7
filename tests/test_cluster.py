"""A Fay cluster on this machine: a real ``redis-server``, a ``chroma run`` server and three ``fay run`` nodes.

A session created through node A and placed on node B answers a message sent to node C; ``fay kb ingest`` with
A's settings is answered from by C; killing B (``kill -9``) ends B's sessions with a 410 naming B within the
heartbeat expiry while new sessions succeed on A and C; SIGTERM drains A (no new sessions placed there, its open
ones still served through the others, then exit 0).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from fay_core.app import Fay
from fay_core.errors import ConfigError
from fay_core.keys import KeyStore
from fay_core.server import create_app
from fay_core.settings import load_settings
from fay_core.testing import test_settings

ROOT = Path(__file__).resolve().parent.parent
CHROMA = Path(sys.executable).with_name("chroma")
REDIS = shutil.which("redis-server")
HEARTBEAT_S, EXPIRY_S = 0.5, 2.0
HOURS = "What are your opening hours?"
#: each node's log file, by process id
LOGS: dict[int, Path] = {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _call(method: str, url: str, body: dict[str, Any] | None = None, timeout: float = 30
          ) -> tuple[int, dict[str, str], Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw, status, headers = r.read().decode(), r.status, dict(r.headers)
    except urllib.error.HTTPError as exc:
        raw, status, headers = exc.read().decode(), exc.code, dict(exc.headers)
    try:
        return status, headers, json.loads(raw)
    except json.JSONDecodeError:
        return status, headers, raw


def _wait(url: str, proc: subprocess.Popen[str], what: str, limit_s: float = 240) -> None:
    deadline = time.monotonic() + limit_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            assert proc.poll() is None, f"{what} exited: {_tail(proc)}"
            assert time.monotonic() < deadline, f"{what} did not answer in {limit_s} s: {_tail(proc)}"
            time.sleep(0.2)


def _tail(proc: subprocess.Popen[str]) -> str:
    log = LOGS.get(proc.pid)
    if log is not None and log.is_file():
        return log.read_text()[-3000:]
    return proc.stderr.read()[-3000:] if proc.stderr and proc.poll() is not None else ""


def _personas(tmp: Path) -> Path:
    """The default persona with a small knowledge folder (two FAQ entries: a quick first ingest) and a voice
    that loads at once (the test speaks no audio)."""
    knowledge = tmp / "knowledge"
    knowledge.mkdir()
    faq = (ROOT / "knowledge" / "demo_bank" / "en" / "faq.yaml").read_text().splitlines()
    (knowledge / "faq.yaml").write_text("\n".join(faq[:10]) + "\n")
    text = (ROOT / "personas" / "bank_teller_en.yaml").read_text()
    for old, new in (("paths: [../knowledge/demo_bank/en]", f"paths: [{knowledge}]"),
                     ("  engine: auto\n", "  engine: espeak\n"), ("  fallback: [piper, espeak]\n", "")):
        assert old in text, old
        text = text.replace(old, new, 1)
    personas = tmp / "personas"
    personas.mkdir()
    (personas / "bank_teller_en.yaml").write_text(text)
    return personas


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


@dataclass
class Node:
    proc: subprocess.Popen[str]
    url: str
    env: dict[str, str]


def _redis(tmp: Path) -> tuple[subprocess.Popen[str], str]:
    """A throw-away redis-server on a free loopback port, answering PING."""
    if REDIS is None:
        pytest.fail("redis-server is not installed: `make system-deps` (Debian's redis-server)")
    port = _free_port()
    proc = subprocess.Popen([REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, f"redis-server did not start: {_tail(proc)}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, url = _redis(tmp_path_factory.mktemp("redis"))
    yield url
    _stop(proc)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[list[Node]]:
    """Redis, a Chroma server and three nodes sharing them, on loopback; every process stopped at the end."""
    tmp = tmp_path_factory.mktemp("cluster")
    procs: list[subprocess.Popen[str]] = []
    try:
        chroma_port = _free_port()
        chroma = subprocess.Popen([str(CHROMA), "run", "--host", "127.0.0.1", "--port", str(chroma_port),
                                   "--path", str(tmp / "chroma")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        procs.append(chroma)
        _wait(f"http://127.0.0.1:{chroma_port}/api/v2/heartbeat", chroma, "chroma run", 60)
        personas = _personas(tmp)
        nodes = []
        for name in "abc":
            port = _free_port()
            url = f"http://127.0.0.1:{port}"
            env = {k: v for k, v in os.environ.items() if not k.startswith("FAY_")}
            # the models converted once for this machine (e5-fast, whisper) are shared: the cache, not data
            env.update(FAY_DATA_DIR=str(tmp / name), HOME=str(tmp), FAY_CONFIG="/nonexistent",
                       XDG_CACHE_HOME=os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache"),
                       FAY_PERSONAS_DIR=str(personas),
                       FAY_CLUSTER__REDIS_URL=redis_url, FAY_CLUSTER__NODE_URL=url,
                       FAY_CLUSTER__HEARTBEAT_S=str(HEARTBEAT_S), FAY_CLUSTER__EXPIRY_S=str(EXPIRY_S),
                       FAY_KNOWLEDGE__CHROMA_URL=f"http://127.0.0.1:{chroma_port}",
                       FAY_SERVER__DRAIN_TIMEOUT_S="30", FAY_VOICE__TURN__ENGINE="none")  # text only: less to load
            with open(tmp / f"{name}.log", "w") as log:  # a file: a full pipe would block the node
                proc = subprocess.Popen([sys.executable, "-m", "fay_core", "run", "--port", str(port)], env=env,
                                        cwd=tmp, stdout=subprocess.DEVNULL, stderr=log, text=True)
            procs.append(proc)
            LOGS[proc.pid] = tmp / f"{name}.log"
            nodes.append(Node(proc, url, env))
        for i, node in enumerate(nodes):
            _wait(f"{node.url}/ready", node.proc, f"node {'abc'[i]}")
        yield nodes
    finally:
        for proc in reversed(procs):
            _stop(proc)


def _create(entry: Node) -> tuple[str, str]:
    """A new session through ``entry``: its id and the node that serves it."""
    status, headers, body = _call("POST", f"{entry.url}/api/sessions", {"persona": "bank_teller_en"})
    assert status == 201, body
    assert headers["X-Fay-Node"] == body["node"]
    return body["session_id"], body["node"]


def _ask(entry: Node, sid: str, text: str) -> tuple[int, dict[str, str], Any]:
    return _call("POST", f"{entry.url}/api/sessions/{sid}/messages", {"text": text})


def _answer(sse: str) -> dict[str, Any]:
    events = [json.loads(line[6:]) for line in sse.splitlines() if line.startswith("data: ")]
    answers = [e for e in events if e["type"] == "answer"]
    assert len(answers) == 1, sse
    return answers[0]


def _loads(entry: Node) -> dict[str, dict[str, Any]]:
    status, _, body = _call("GET", f"{entry.url}/api/cluster")
    assert status == 200 and body["enabled"] and body["node"] == entry.url, body
    return {n["url"]: n for n in body["nodes"]}


@pytest.mark.slow
@pytest.mark.timeout(400)  # three nodes warming up on a busy two-core machine
def test_a_cluster_places_routes_survives_a_dead_node_and_drains(cluster: list[Node], tmp_path: Path) -> None:
    a, n1, n2 = cluster
    assert set(_loads(n1)) == {a.url, n1.url, n2.url}  # every node sees the three
    # placement through A: A first (least loaded, no hop), then the others, by load
    first, on = _create(a)
    assert on == a.url
    second, on_b = _create(a)
    assert on_b in (n1.url, n2.url)
    b, c = (n1, n2) if on_b == n1.url else (n2, n1)
    third, on = _create(a)
    assert on == c.url  # the one node with no session yet
    assert {u: n["load"] for u, n in _loads(c).items()} == {a.url: 1, b.url: 1, c.url: 1}

    # a session placed on B answers a message sent to C (forwarded, the answer streamed back)
    status, headers, sse = _ask(c, second, HOURS)
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    assert headers["X-Fay-Node"] == b.url
    assert "Monday to Friday" in _answer(sse)["text"]
    status, _, history = _call("GET", f"{a.url}/api/sessions/{second}")
    assert status == 200 and [m["content"] for m in history["history"]][0] == HOURS
    assert _call("GET", f"{c.url}/api/sessions/no-such-session")[0] == 404  # unknown: as a single server says

    # `fay kb ingest` with A's settings is answered from by C (one Chroma server, no restart)
    doc = tmp_path / "vault.md"
    doc.write_text("# How much does a safe deposit box cost?\nA small safe deposit box costs 45 euros a year.\n")
    done = subprocess.run([sys.executable, "-m", "fay_core", "kb", "ingest", str(doc), "-c", "harbor-bank-en",
                           "--no-prune"], env=a.env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    status, headers, sse = _ask(a, third, "How much does a safe deposit box cost?")
    assert status == 200 and headers["X-Fay-Node"] == c.url
    assert "45 euros" in _answer(sse)["text"]

    # kill -9 B: new sessions succeed at once (on A and C), B's sessions answer 410 naming B within the expiry
    b.proc.send_signal(signal.SIGKILL)
    b.proc.wait(10)
    killed = time.monotonic()
    placed = {_create(entry)[1] for entry in (a, c, a, c)}
    assert placed <= {a.url, c.url}
    while True:
        status, headers, body = _ask(c, second, HOURS)
        if status == 410:
            break
        assert status == 503 and int(headers["Retry-After"]) > 0, (status, body)  # alive by its record: retry
        assert time.monotonic() - killed < EXPIRY_S + 2, "B's session did not end within the heartbeat expiry"
        time.sleep(0.1)
    assert b.url in body["error"] and "start a new session" in body["error"]
    assert _call("GET", f"{a.url}/api/sessions/{second}")[0] == 410
    assert set(_loads(a)) == {a.url, c.url}

    # SIGTERM to A drains it: no new session lands there, its open sessions are still served, then exit 0
    on_a = [sid for sid, n in _listed(a) if n == a.url]
    assert first in on_a
    a.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    while not _loads(c)[a.url]["draining"]:
        assert time.monotonic() < deadline, "A's record does not say it drains"
        time.sleep(0.05)
    assert _call("GET", f"{a.url}/ready")[0] == 503
    assert _create(c)[1] == c.url and _create(a)[1] == c.url  # even through A: placed on C
    offer = {"sdp": asyncio.run(_sample_offer()), "type": "offer", "persona": "bank_teller_en"}
    status, headers, answer = _call("POST", f"{a.url}/api/webrtc/offer", offer)  # a WebRTC session too
    assert status == 201 and answer["type"] == "answer" and headers["X-Fay-Node"] == c.url, answer
    assert _call("DELETE", f"{a.url}/api/sessions/{answer['session_id']}")[0] == 200  # through A, to C
    status, headers, sse = _ask(c, first, HOURS)
    assert status == 200 and headers["X-Fay-Node"] == a.url and "Monday to Friday" in _answer(sse)["text"]
    assert a.proc.poll() is None  # it waits for its sessions
    for sid in on_a:
        assert _call("DELETE", f"{c.url}/api/sessions/{sid}")[0] == 200
    assert a.proc.wait(20) == 0
    status, _, body = _ask(c, first, HOURS)
    assert status == 410 and a.url in body["error"]
    assert set(_loads(c)) == {c.url}


async def _sample_offer() -> str:
    """An SDP offer with a data channel, from a peer that never connects."""
    from aiortc import RTCPeerConnection

    pc = RTCPeerConnection()
    pc.createDataChannel("fay")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return str(sdp)


def _listed(node: Node) -> list[tuple[str, str]]:
    """The open sessions ``node`` serves, as (id, node)."""
    status, headers, body = _call("GET", f"{node.url}/api/sessions")
    assert status == 200
    return [(s["session_id"], headers["X-Fay-Node"]) for s in body]


def test_cluster_settings_need_a_node_url_and_a_redis_url(tmp_path: Path) -> None:
    settings = test_settings(tmp_path / "data", cluster={"redis_url": "redis://127.0.0.1:6379/0"})
    with pytest.raises(ConfigError, match="FAY_CLUSTER__NODE_URL"):
        create_app(Fay(settings))  # `fay run` needs it; `fay kb ingest` with the same settings does not
    with pytest.raises(ConfigError, match="not an http"):
        load_settings(cluster={"redis_url": "redis://127.0.0.1:6379/0", "node_url": "10.0.0.5:8000"})
    with pytest.raises(ConfigError, match="redis://"):
        load_settings(cluster={"redis_url": "http://127.0.0.1:6379", "node_url": "http://10.0.0.5:8000"})
    with pytest.raises(ConfigError, match="longer than heartbeat_s"):
        load_settings(cluster={"heartbeat_s": 5, "expiry_s": 2})
    assert load_settings().cluster.redis_url is None


# --- in-process nodes: redirects, restarts, tenants, a Redis that goes away ---------------------------------------


PLAIN = "name: Plain\nlanguage: en\ngreeting: Hello.\n"


@dataclass
class Live:
    fay: Fay
    server: TestServer
    url: str

    async def close(self) -> None:
        await self.server.close()


async def _live(tmp: Path, name: str, redis: str, port: int | None = None, **cluster: Any) -> Live:
    """A node in this process (a persona without knowledge: nothing to load), on ``port`` if given."""
    personas = tmp / "personas"
    if not personas.is_dir():
        personas.mkdir()
        (personas / "plain.yaml").write_text(PLAIN)
        (personas / "teller_a.yaml").write_text(PLAIN + "tenant: bank-a\n")
    port = port or _free_port()
    url = f"http://127.0.0.1:{port}"
    settings = test_settings(tmp / name, personas_dir=personas, default_persona="plain",
                             cluster={"redis_url": redis, "node_url": url, "heartbeat_s": 0.3, "expiry_s": 3.0,
                                      "prefix": tmp.name[-30:].strip("_-"), **cluster})
    fay = Fay(settings)
    server = TestServer(create_app(fay), host="127.0.0.1", port=port)
    await server.start_server()
    return Live(fay, server, url)


async def test_redirects_restarts_and_other_tenants(tmp_path: Path, redis_url: str) -> None:
    x = await _live(tmp_path, "x", redis_url, forward=False)  # nodes that cannot reach each other: redirects
    y = await _live(tmp_path, "y", redis_url)
    try:
        store = KeyStore.in_data_dir(x.fay.settings.data_dir)  # the same keys on both nodes
        _, key_a = store.create(name="a", tenant="bank-a", scopes=["chat", "admin"])
        _, key_b = store.create(name="b", tenant="bank-b", scopes=["chat", "admin"])
        y.fay.settings.data_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(x.fay.settings.data_dir / "keys.json", y.fay.settings.data_dir / "keys.json")
        a, b = {"Authorization": f"Bearer {key_a}"}, {"Authorization": f"Bearer {key_b}"}
        async with ClientSession() as http:
            async def post(url: str, path: str, headers: dict[str, str], body: Any) -> Any:
                return await http.post(url + path, json=body, headers=headers, allow_redirects=False)

            async with await post(x.url, "/api/sessions", a, {"persona": "teller_a"}) as r:
                assert r.status == 201 and r.headers["X-Fay-Node"] == x.url  # least loaded, itself: no hop
            async with await post(x.url, "/api/sessions", a, {"persona": "teller_a"}) as r:
                assert r.status == 307 and r.headers["Location"] == f"{y.url}/api/sessions"  # y has room
            async with await post(y.url, "/api/sessions", a, {"persona": "teller_a"}) as r:
                assert r.status == 201 and r.headers["X-Fay-Node"] == y.url
                sid = (await r.json())["session_id"]
            async with http.get(f"{x.url}/api/sessions/{sid}", headers=a, allow_redirects=False) as r:
                assert r.status == 307 and r.headers["Location"] == f"{y.url}/api/sessions/{sid}"
                location = r.headers["Location"]
            # a client follows it with its key (aiohttp, like browsers, drops Authorization across origins)
            async with http.get(location, headers=a) as r:
                assert r.status == 200 and r.headers["X-Fay-Node"] == y.url
            async with http.get(f"{x.url}/api/cluster", headers=b) as r:
                nodes = {n["url"]: n for n in (await r.json())["nodes"]}
                assert r.status == 200 and nodes[x.url]["load"] == 1 and nodes[y.url]["load"] == 1, nodes

            port = y.server.port
            await y.close()  # a clean stop removes its record: its sessions are gone at once
            async with http.get(f"{x.url}/api/sessions/{sid}", headers=a) as r:
                body = await r.json()
                assert r.status == 410 and y.url in body["error"] and "stopped answering" in body["error"], body
            async with http.get(f"{x.url}/api/sessions/{sid}", headers=b) as r:
                assert r.status == 404  # another tenant's session: unknown, as everywhere
            async with http.get(f"{x.url}/api/sessions/{sid}") as r:
                assert r.status == 401  # no key: nothing said about the session
            y = await _live(tmp_path, "y", redis_url, port=port)  # the same URL, a new process
            async with http.get(f"{x.url}/api/sessions/{sid}", headers=a) as r:
                body = await r.json()
                assert r.status == 410 and "restarted since" in body["error"], body
    finally:
        await x.close()
        await y.close()


async def test_a_redis_that_goes_away_refuses_new_sessions_clearly(tmp_path: Path) -> None:
    proc, url = _redis(tmp_path)
    node = await _live(tmp_path, "n", url)
    try:
        async with ClientSession(base_url=node.url) as http:
            async with http.post("/api/sessions", json={}) as r:
                assert r.status == 201
                sid = (await r.json())["session_id"]
            _stop(proc)
            started = time.monotonic()
            async with http.post("/api/sessions", json={}) as r:
                body = await r.json()
                assert r.status == 503 and "Redis" in body["error"] and int(r.headers["Retry-After"]) > 0, body
            assert time.monotonic() - started < 30  # bounded by cluster.connect_timeout_s: nothing hangs
            async with http.post(f"/api/sessions/{sid}/messages", json={"text": "hello"}) as r:
                assert r.status == 200  # its own session is still served
            assert len(node.fay.sessions) == 1
    finally:
        await node.close()
        _stop(proc)


def test_without_the_setting_nothing_of_the_cluster_is_loaded(tmp_path: Path) -> None:
    code = ("import sys; from pathlib import Path; from fay_core.app import Fay; "
            "from fay_core.server import create_app; from fay_core.testing import test_settings; "
            "app = create_app(Fay(test_settings(Path(sys.argv[1])))); "
            "print(sorted(m for m in ('redis', 'fay_core.cluster') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "data")], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr[-2000:]
