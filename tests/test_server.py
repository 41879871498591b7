"""The HTTP server: sessions, streamed answers, clear errors, isolation between sessions."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from fay_core import errors
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
    assert kinds[-2:] == ["answer", "done"] and "delta" in kinds
    done = events[-2][1]
    assert events[-1][1] == {**done, "type": "done"}  # the deprecated name, still sent for old clients
    assert all(data["type"] == kind for kind, data in events)
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
        answer = dict(parse_sse(await r.text()))["answer"]
    assert "冻结" in answer["text"]


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
async def test_bad_requests_get_clear_errors(client, method: str, path: str, body: Any, status: int,
                                            message: str) -> None:
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
        assert r.status == 413 and "over the limit" in (await r.json())["error"]
    huge = json.dumps({"text": "x" * (fay.settings.server.max_body_bytes + 10)})
    async with http.post(f"/api/sessions/{sid}/messages", data=huge) as r:
        assert r.status == 413 and "too large" in (await r.json())["error"]
    # the session survived all of that
    async with http.post(f"/api/sessions/{sid}/messages", json={"text": "opening hours"}) as r:
        assert parse_sse(await r.text())[-2][0] == "answer"


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
                assert int(r.headers["Retry-After"]) > 0
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
    errors = [data for kind, data in events if kind == "error"]
    assert ("crashing", "ZeroDivisionError: answerer bug", False) in [(e["source"], e["message"], e["fatal"])
                                                                       for e in errors]
    assert events[-2][0] == "answer" and "Monday" in events[-2][1]["text"]  # the offline answerer stood in
    async with http.post(f"/api/sessions/{good}/messages", json={"text": "opening hours"}) as r:
        events = parse_sse(await r.text())
    assert [k for k, _ in events if k == "error"] == [] and "Monday" in events[-1][1]["text"]
    async with http.get("/health") as r:
        assert (await r.json())["sessions"] == 2


# --- errors route themselves by class ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.FayError, 500),
        (errors.ConfigError, 500),
        (errors.PersonaError, 422),
        (errors.UnknownPersona, 404),
        (errors.PluginError, 500),
        (errors.EngineError, 500),
        (errors.EngineUnavailable, 500),
        (errors.KnowledgeError, 500),
        (errors.SessionError, 400),
        (errors.UnknownSession, 404),
        (errors.ClosedSession, 410),
        (errors.SessionLimit, 503),
        (errors.InvalidMessage, 400),
        (errors.MessageTooLong, 413),
        (errors.OfferError, 400),
        (errors.InvalidOffer, 400),
        (errors.OfferTooLarge, 413),
        (errors.PeerLimit, 503),
    ],
)
async def test_each_error_class_is_answered_with_its_status(settings: Settings, error: type[errors.FayError],
                                                             status: int) -> None:
    async def fail(_request: web.Request) -> web.Response:
        raise error(f"a {error.__name__} for people")

    app = create_app(Fay(settings))
    app.router.add_get("/api/fail", fail)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with ClientSession(base_url=str(server.make_url(""))) as http, http.get("/api/fail") as r:
            assert (r.status, await r.json()) == (status, {"error": f"a {error.__name__} for people"})
            assert ("Retry-After" in r.headers) == (status == 503)
    finally:
        await server.close()


def test_the_deprecated_offer_error_form_still_sets_its_status() -> None:
    from fay_core.transport.transport import OfferError

    assert OfferError is errors.OfferError
    exc = OfferError(413, "too big")
    assert (exc.status, str(exc)) == (413, "too big") and errors.OfferError.status == 400


async def test_real_refusals_get_their_status(client) -> None:
    http, fay = client
    async with http.post("/api/sessions", json={"persona": "nobody"}) as r:
        assert r.status == 404 and "unknown persona 'nobody'" in (await r.json())["error"]
    async with http.get("/api/sessions/nope") as r:
        assert r.status == 404 and "unknown session 'nope'" in (await r.json())["error"]
    async with http.post("/api/webrtc/offer", json={"sdp": "hello", "type": "offer"}) as r:
        assert r.status == 400 and "malformed SDP" in (await r.json())["error"]
    huge = "v=0\r\n" + "a=x-pad:" + "x" * fay.settings.webrtc.max_sdp_bytes
    async with http.post("/api/webrtc/offer", json={"sdp": huge, "type": "offer"}) as r:
        assert r.status == 413 and "over the limit" in (await r.json())["error"]
    session = fay.get(await new_session(http))
    await session.close("test")
    with pytest.raises(errors.ClosedSession, match="is closed") as info:
        session.submit("hi")
    assert info.value.status == 410


async def test_error_bodies_do_not_leak_server_paths_or_reprs(settings: Settings, tmp_path: Path) -> None:
    personas = tmp_path / "secret_personas_dir"
    personas.mkdir()
    (personas / "broken.yaml").write_text("name: Broken\nlanguage: en\nnot_a_field: 1\n")
    settings.personas_dir = personas
    fay = Fay(settings)
    server = TestServer(create_app(fay), host="127.0.0.1")
    await server.start_server()
    try:
        async with ClientSession(base_url=str(server.make_url(""))) as http:
            bodies = []
            for persona, status in (("nobody", 404), ("broken", 422)):
                async with http.post("/api/sessions", json={"persona": persona}) as r:
                    assert r.status == status
                    bodies.append(await r.text())
            for data in (b"{not json", b"[1]", b'{"text": 7}'):
                async with http.post("/api/sessions/nope/messages", data=data) as r:
                    assert r.status in (400, 404)
                    bodies.append(await r.text())
            for data in (b"{not json", b'{"sdp": 1}', b'{"sdp": "v=0\\r\\nm=audio 9 RTP 0\\r\\n"}'):
                async with http.post("/api/webrtc/offer", data=data) as r:
                    assert r.status == 400
                    bodies.append(await r.text())
            async with http.get("/api/personas") as r:
                bodies.append(await r.text())
    finally:
        await server.close()
    assert "broken.yaml:3: not_a_field" in bodies[1]  # the operator's problem, named, without the folder
    for body in bodies:
        assert "secret_personas_dir" not in body and str(tmp_path) not in body, body
        assert not re.search(r"Traceback|<[\w.]+ object|\b\w+(Error|Exception)\b[:(]", body), body
