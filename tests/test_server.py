"""The HTTP server: sessions, streamed answers, clear errors, isolation between sessions."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from fay_core.app import Fay
from fay_core.settings import ServerSettings, Settings
from fay_core.server import create_app


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[tuple[ClientSession, Fay]]:
    fay = Fay(settings)
    server = TestServer(create_app(fay), host="127.0.0.1")
    await server.start_server()
    async with ClientSession(base_url=str(server.make_url(""))) as http:
        yield http, fay
    await server.close()


def parse_sse(body: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out


async def new_session(http: ClientSession, persona: str | None = None) -> str:
    async with http.post("/api/sessions", json={"persona": persona} if persona else {}) as r:
        assert r.status == 201, await r.text()
        return (await r.json())["session_id"]


async def test_health_and_personas(client) -> None:
    http, _ = client
    async with http.get("/health") as r:
        body = await r.json()
        assert r.status == 200 and body["status"] == "ok" and body["sessions"] == 0
    async with http.get("/api/personas") as r:
        personas = {p["id"]: p for p in await r.json()}
    assert personas["bank_teller_en"]["default"] is True and personas["bank_teller_zh"]["language"] == "zh"


async def test_offline_answer_streams_with_its_source(client) -> None:
    http, fay = client
    sid = await new_session(http)
    async with http.post(f"/api/sessions/{sid}/messages", json={"text": "What are your opening hours?"}) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
        events = parse_sse(await r.text())
    kinds = [k for k, _ in events]
    assert kinds[-1] == "done" and "delta" in kinds
    done = events[-1][1]
    assert "Monday to Friday" in done["text"] and done["answered_by"] == "offline"
    assert done["citations"][0]["source"].endswith(".yaml")
    assert "".join(d["text"] for k, d in events if k == "delta") == done["text"]
    async with http.get(f"/api/sessions/{sid}") as r:
        history = (await r.json())["history"]
    assert [m["role"] for m in history] == ["user", "assistant"]


async def test_chinese_persona_answers_in_chinese(client) -> None:
    http, _ = client
    sid = await new_session(http, "bank_teller_zh")
    async with http.post(f"/api/sessions/{sid}/messages", json={"text": "银行卡丢了怎么办"}) as r:
        done = parse_sse(await r.text())[-1][1]
    assert "冻结" in done["text"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("post", "/api/sessions", {"persona": "nobody"}, 404, "unknown persona 'nobody'"),
        ("post", "/api/sessions", {"persona": 7}, 400, "'persona' must be"),
        ("post", "/api/sessions/nope/messages", {"text": "hi"}, 404, "unknown session 'nope'"),
        ("get", "/api/sessions/nope", None, 404, "unknown session"),
        ("delete", "/api/sessions/nope", None, 404, "unknown session"),
    ],
)
async def test_bad_requests_get_clear_errors(client, method: str, path: str, body: Any, status: int, message: str) -> None:
    http, _ = client
    async with http.request(method, path, json=body) as r:
        assert r.status == status
        assert message in (await r.json())["error"]


async def test_malformed_and_oversized_bodies(client) -> None:
    http, fay = client
    sid = await new_session(http)
    async with http.post(f"/api/sessions/{sid}/messages", data=b"{not json") as r:
        assert r.status == 400 and "not JSON" in (await r.json())["error"]
    async with http.post(f"/api/sessions/{sid}/messages", json={"text": ""}) as r:
        assert r.status == 400 and "empty message" in (await r.json())["error"]
    async with http.post(f"/api/sessions/{sid}/messages", json={"text": "x" * 5000}) as r:
        assert r.status == 400 and "over the limit" in (await r.json())["error"]
    huge = json.dumps({"text": "x" * (fay.settings.server.max_body_bytes + 10)})
    async with http.post(f"/api/sessions/{sid}/messages", data=huge) as r:
        assert r.status == 413 and "too large" in (await r.json())["error"]
    # the session survived all of that
    async with http.post(f"/api/sessions/{sid}/messages", json={"text": "opening hours"}) as r:
        assert parse_sse(await r.text())[-1][0] == "done"


async def test_session_limit_is_a_clear_refusal(settings: Settings) -> None:
    settings.server = ServerSettings(max_sessions=2)
    fay = Fay(settings)
    server = TestServer(create_app(fay), host="127.0.0.1")
    await server.start_server()
    try:
        async with ClientSession(base_url=str(server.make_url(""))) as http:
            await new_session(http)
            sid = await new_session(http)
            async with http.post("/api/sessions", json={}) as r:
                assert r.status == 503 and "too many sessions" in (await r.json())["error"]
            async with http.delete(f"/api/sessions/{sid}") as r:
                assert r.status == 200
            await new_session(http)  # room again
    finally:
        await server.close()


async def test_token_protects_the_api(settings: Settings) -> None:
    settings.server = ServerSettings(token="s3cret")
    fay = Fay(settings)
    server = TestServer(create_app(fay), host="127.0.0.1")
    await server.start_server()
    try:
        async with ClientSession(base_url=str(server.make_url(""))) as http:
            async with http.post("/api/sessions", json={}) as r:
                assert r.status == 401 and "Bearer" in (await r.json())["error"]
            async with http.post("/api/sessions", json={}, headers={"Authorization": "Bearer s3cret"}) as r:
                assert r.status == 201
            async with http.get("/health") as r:
                assert r.status == 200  # health stays open for load balancers
    finally:
        await server.close()


async def test_a_failing_session_does_not_stop_another(client) -> None:
    http, fay = client
    bad, good = await new_session(http), await new_session(http)

    def explode(event: object) -> None:
        raise RuntimeError("subscriber bug in one session")

    from fay_core.events import AgentTextDelta

    fay.get(bad).bus.subscribe(explode, AgentTextDelta, name="buggy")

    class Crashing:
        name = "crashing"

        async def answer(self, turn: Any) -> None:
            raise ZeroDivisionError("answerer bug")

    fay.get(bad).agent.answerer = Crashing()  # type: ignore[union-attr]
    async with http.post(f"/api/sessions/{bad}/messages", json={"text": "opening hours"}) as r:
        events = parse_sse(await r.text())
    assert ("error", {"source": "crashing", "message": "ZeroDivisionError: answerer bug"}) in events
    assert events[-1][0] == "done" and "Monday" in events[-1][1]["text"]  # the offline answerer stood in
    async with http.post(f"/api/sessions/{good}/messages", json={"text": "opening hours"}) as r:
        events = parse_sse(await r.text())
    assert [k for k, _ in events if k == "error"] == [] and "Monday" in events[-1][1]["text"]
    async with http.get("/health") as r:
        assert (await r.json())["sessions"] == 2
