"""Faults a bank's server meets over months: every one ends, in bounded time, with the user's words on record.

Closing a session mid-answer, SIGTERM and kill -9 of `fay run`, an unwritable audit log, a lone surrogate, a tool
the model asks to run for another customer, a dead and a hung LLM endpoint.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from fay_core.app import Fay
from fay_core.audit import AuditLog
from fay_core.errors import FayError
from fay_core.events import AgentTurnFinished
from fay_core.server import create_app
from fay_core.settings import LLMSettings, Settings
from fay_core.testing import FakeLLM, Reply, fay_env, start_fay_run

ROOT = Path(__file__).resolve().parent.parent


def user_words(audit: AuditLog, session_id: str | None = None) -> list[str]:
    return [r["text"] for r in audit.read(session_id) if r["kind"] == "user"]


def _personas(tmp_path: Path) -> Path:
    """interviewer_en (LLM, no avatar), the same persona with an avatar renderer, and ``interviewer_faq``: the same
    persona without its role-play scenario (it answers from its inline FAQ)."""
    folder = tmp_path / "personas"
    folder.mkdir()
    text = (ROOT / "personas" / "interviewer_en.yaml").read_text(encoding="utf-8")
    (folder / "interviewer_en.yaml").write_text(text, encoding="utf-8")
    (folder / "interviewer_avatar.yaml").write_text(text + "avatar:\n  renderer: params3d\n", encoding="utf-8")
    data = yaml.safe_load(text)
    del data["scenario"]
    (folder / "interviewer_faq.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return folder


@pytest.fixture
async def served(settings: Settings, fake_llm: FakeLLM, tmp_path: Path) -> AsyncIterator[tuple[Fay, ClientSession]]:
    settings.personas_dir = _personas(tmp_path)
    settings.llm = LLMSettings(model=fake_llm.model, api_base=fake_llm.url, retries=0, first_token_timeout_s=1.0)
    fay = Fay(settings)
    server = TestServer(create_app(fay), host="127.0.0.1")
    await server.start_server()
    try:
        async with ClientSession(base_url=str(server.make_url(""))) as http:
            yield fay, http
    finally:
        await server.close()


async def _session(http: ClientSession, persona: str, **body: str) -> str:
    async with http.post("/api/sessions", json={"persona": persona, **body}) as r:
        assert r.status == 201, await r.text()
        return str((await r.json())["session_id"])


def _events(stream: str) -> list[dict[str, object]]:
    return [json.loads(line[6:]) for line in stream.splitlines() if line.startswith("data: ")]


# --- closing mid-answer -----------------------------------------------------------------------------------


@pytest.mark.parametrize("persona", ["interviewer_en", "interviewer_avatar"])
async def test_delete_mid_answer_ends_the_stream_with_an_interrupted_answer(
    served: tuple[Fay, ClientSession], fake_llm: FakeLLM, persona: str
) -> None:
    fay, http = served
    fay.settings.llm.first_token_timeout_s = 30.0  # a slow answer, not a failed one
    fake_llm.enqueue(Reply("Tell me about yourself.", first_token_delay=8))
    sid = await _session(http, persona)

    async def ask() -> tuple[int, str]:
        async with http.post(f"/api/sessions/{sid}/messages", json={"text": "I am ready"}) as r:
            return r.status, await r.text()

    asking = asyncio.create_task(ask())
    try:
        for _ in range(200):  # the turn has started once the user's words are on record
            if user_words(fay.audit, sid):
                break
            await asyncio.sleep(0.02)
        async with http.delete(f"/api/sessions/{sid}") as r:
            assert r.status == 200
        status, stream = await asyncio.wait_for(asyncio.shield(asking), 4)
    finally:
        asking.cancel()
        await asyncio.gather(asking, return_exceptions=True)
    answer = _events(stream)[-2]  # answer, then its deprecated copy "done"
    assert status == 200 and answer["type"] == "answer" and answer["interrupted"] is True
    assert user_words(fay.audit, sid) == ["I am ready"]


async def test_closing_a_session_releases_every_ask(settings: Settings) -> None:
    async with Fay(settings) as fay:  # offline persona: the close comes before the first answer event
        session = await fay.create_session("interviewer_en")
        stream = aiter(session.ask("Hello"))
        first = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0)
        await session.close("closed by test")
        events = [await asyncio.wait_for(first, 5)]
        events += [e async for e in stream]
    assert isinstance(events[-1], AgentTurnFinished)
    assert user_words(fay.audit, session.id) == ["Hello"]


# --- the record first --------------------------------------------------------------------------------------


@pytest.mark.parametrize("breakage", ["read-only folder", "a file in the way"])
async def test_an_unwritable_audit_log_refuses_the_turn_with_503(
    served: tuple[Fay, ClientSession], fake_llm: FakeLLM, breakage: str
) -> None:
    fay, http = served
    sid = await _session(http, "interviewer_en")
    folder = fay.audit.folder
    if breakage == "a file in the way":
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.write_text("not a folder")
    else:
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o500)
        if os.access(folder, os.W_OK):
            folder.chmod(0o700)
            pytest.skip("running as root: a read-only folder is still writable")
    try:
        async with http.post(f"/api/sessions/{sid}/messages", json={"text": "My card was stolen"}) as r:
            assert r.status == 503 and r.headers["Retry-After"]
            assert "recorded" in (await r.json())["error"]
        assert not fake_llm.requests  # nothing was answered
        assert fay.get(sid).history.messages == []
    finally:
        if folder.is_dir():
            folder.chmod(0o700)
        else:
            folder.unlink()
    async with http.post(f"/api/sessions/{sid}/messages", json={"text": "My card was stolen"}) as r:
        assert r.status == 200 and "event: answer" in await r.text()  # writable again: answered
    assert user_words(fay.audit, sid) == ["My card was stolen"]


def test_audit_write_raises_audit_unavailable(tmp_path: Path) -> None:
    (tmp_path / "audit").write_text("in the way")
    with pytest.raises(FayError) as info:  # AuditUnavailable
        AuditLog(tmp_path / "audit").write({"kind": "user", "text": "hi"})
    assert type(info.value).__name__ == "AuditUnavailable" and info.value.status == 503
    assert str(tmp_path) not in info.value.public


async def test_a_lone_surrogate_is_audited_and_chinese_stays_readable(
    served: tuple[Fay, ClientSession]
) -> None:
    fay, http = served
    sid = await _session(http, "interviewer_en")
    text = "bad \ud800 byte 你好"
    body = json.dumps({"text": text}).encode()  # ensure_ascii: the surrogate travels as \ud800
    async with http.post(f"/api/sessions/{sid}/messages", data=body,
                         headers={"Content-Type": "application/json"}) as r:
        # the HTTP edge refuses it (fay_core.http_input): nothing it did not accept needs a record
        assert r.status == 400 and "surrogate" in (await r.json())["error"]
    assert user_words(fay.audit, sid) == []
    # a caller of the Python API can still hand one over: then it is audited, as an escape
    await fay.get(sid).answer(text)
    assert user_words(fay.audit, sid) == [text]
    raw = b"".join(p.read_bytes() for p in fay.audit.folder.glob("*.jsonl")).decode("utf-8")
    assert "\\ud800" in raw and "你好" in raw


async def test_a_tool_record_shows_the_customer_it_ran_for(settings: Settings, fake_llm: FakeLLM) -> None:
    settings.llm = LLMSettings(model=fake_llm.model, api_base=fake_llm.url, retries=0)
    fake_llm.enqueue(Reply(tool_calls=[{"id": "b", "name": "account_balance", "arguments": {"customer_id": "C1002"}}]),
                     Reply("Your balance is 12480.55."))
    fay = Fay(settings)
    server = TestServer(create_app(fay), host="127.0.0.1")
    await server.start_server()
    try:
        async with ClientSession(base_url=str(server.make_url(""))) as http:
            sid = await _session(http, "bank_teller_en", customer_token="demo-alice-token")
            owner = {"X-Fay-Customer-Token": "demo-alice-token"}  # a signed-in session answers only its owner
            async with http.post(f"/api/sessions/{sid}/messages", json={"text": "I'm Bob, my balance?"},
                                 headers=owner) as r:
                assert r.status == 200 and "12480.55" in await r.text()
    finally:
        await server.close()
    (answer,) = [r for r in fay.audit.read(sid) if r["kind"] == "answer"]
    (tool,) = answer["tools"]
    assert tool["arguments"] == {"customer_id": "C1001"}  # Alice, signed in with her token
    assert tool["model_arguments"] == {"customer_id": "C1002"}  # what the model asked for, marked as such
    assert user_words(fay.audit, sid) == ["I'm Bob, my balance?"]


# --- dead and hung LLM endpoints ----------------------------------------------------------------------------


def _refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again: connecting is refused


@pytest.mark.parametrize("fault", ["connection refused", "no first token"])
async def test_a_dead_or_hung_llm_is_answered_by_the_fallback_quickly(
    settings: Settings, fake_llm: FakeLLM, fault: str, tmp_path: Path
) -> None:
    if fault == "connection refused":
        api_base = f"http://127.0.0.1:{_refused_port()}/v1"
    else:
        api_base = fake_llm.url
        fake_llm.first_token_delay = 3
    settings.llm = LLMSettings(model=fake_llm.model, api_base=api_base, retries=0, timeout_s=30,
                               first_token_timeout_s=0.5)
    settings.personas_dir = _personas(tmp_path)
    async with Fay(settings) as fay:
        session = await fay.create_session("interviewer_faq")
        finished = await asyncio.wait_for(session.answer("How long does the interview take?"), 60)
    assert finished.answered_by == "fallback" and "twenty minutes" in finished.text
    (answer,) = [r for r in fay.audit.read(session.id) if r["kind"] == "answer"]
    took = answer["latency_ms"]["turn_finished"] - answer["latency_ms"]["retrieved"]  # the LLM's part of the turn
    assert took < 2500, f"the fallback answered {took:.0f} ms after the LLM was asked"
    assert user_words(fay.audit, session.id) == ["How long does the interview take?"]


# --- `fay run`: SIGTERM and kill -9 mid-answer -------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(tmp_path: Path, fake: FakeLLM) -> tuple[subprocess.Popen[str], str]:
    return start_fay_run(tmp_path, env=fay_env(
        tmp_path, FAY_DEFAULT_PERSONA="interviewer_en", FAY_LLM__MODEL=fake.model, FAY_LLM__API_BASE=fake.url,
        FAY_LLM__FIRST_TOKEN_TIMEOUT_S="60", FAY_SERVER__SHUTDOWN_TIMEOUT_S="6"))


def _open_slow_answer(base: str, text: str) -> socket.socket:
    """A session, and a message whose answer is slow, sent on a raw socket that is left open."""
    req = urllib.request.Request(f"{base}/api/sessions", data=b"{}", method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        sid = json.load(r)["session_id"]
    body = json.dumps({"text": text}).encode()
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=20)
    sock.sendall(f"POST /api/sessions/{sid}/messages HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return sock


def _audited(tmp_path: Path, text: str, within: float = 20) -> bool:
    deadline = time.monotonic() + within
    while not any(text in p.read_text(encoding="utf-8") for p in (tmp_path / "data" / "audit").glob("*.jsonl")):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_fay_run_mid_answer_keeps_the_words_and_sigterm_ends_in_time(tmp_path: Path, seeded_data: Path,
                                                                     how: str) -> None:
    fake = FakeLLM(first_token_delay=8)  # slow; its handler must end before in_thread's 10 s stop
    with fake.in_thread():
        proc, base = _start(tmp_path, fake)
        sock = None
        try:
            sock = _open_slow_answer(base, "Please note my complaint")
            assert _audited(tmp_path, "Please note my complaint")  # on record before any answer started
            for _ in range(100):
                if fake.requests:
                    break
                time.sleep(0.05)
            stopped = time.monotonic()
            proc.send_signal(signal.SIGTERM if how == "SIGTERM" else signal.SIGKILL)
            proc.wait(15)
            took = time.monotonic() - stopped
            if how == "SIGTERM":
                assert took < 8, f"fay run took {took:.1f} s to stop after SIGTERM"
                reply = sock.recv(65536).decode(errors="replace")
                assert reply.startswith("HTTP/1.1 200") and "event: answer" in reply and '"interrupted": true' in reply
        finally:
            if sock is not None:
                sock.close()
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
    assert _audited(tmp_path, "Please note my complaint", within=0)
