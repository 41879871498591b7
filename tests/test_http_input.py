"""Bad HTTP input gets a clear 4xx, never a 500 or internals; signed-in sessions answer only their owner.

One test per failure a probe of ``fay run`` found, then a property test that posts generated requests to the
real app (:class:`LiveServer`, also used by ``bench/fuzz_http.py``).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import re
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from fay_core import errors
from fay_core.app import Fay
from fay_core.http_input import bearer_token, parse_json_object
from fay_core.server import create_app
from fay_core.settings import ServerSettings, Settings
from fay_core.testing import test_settings

ROOT = Path(__file__).resolve().parent.parent
ALICE = "demo-alice-token"  # fay_bank_demo's demo sign-in
LEAKS = re.compile(r"Traceback|object at 0x|\b(ValueError|UnicodeDecodeError|JSONDecodeError|RecursionError|OSError|"
                   r"KeyError|TypeError|AttributeError|IndexError)\b|/home/|/tmp/|/work/")


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[tuple[ClientSession, Fay]]:
    fay = Fay(settings)
    server = TestServer(create_app(fay), host="127.0.0.1")
    await server.start_server()
    async with ClientSession(base_url=str(server.make_url(""))) as http_:
        yield http_, fay
    await server.close()


async def new_session(http_: ClientSession, **body: Any) -> dict[str, Any]:
    async with http_.post("/api/sessions", json=body) as r:
        assert r.status == 201, await r.text()
        return dict(await r.json())


async def error_of(r: Any) -> str:
    body = await r.json()
    assert set(body) == {"error"} and not LEAKS.search(body["error"]), body
    return str(body["error"])


# --- one test per failure class ---------------------------------------------------------------------------------


@pytest.mark.parametrize("persona", ["a" * 300, "银" * 90, "a\x00b", "../bank_teller_en", ".hidden", "x y"])
async def test_persona_ids_are_checked_before_the_file_system(client, persona: str) -> None:
    http_, _ = client
    async with http_.post("/api/sessions", json={"persona": persona}) as r:
        assert r.status == 404
        assert "not a persona id" in await error_of(r) or "unknown persona" in await error_of(r)


@pytest.mark.parametrize(
    ("data", "content_type", "status", "message"),
    [
        (b'{"text": "\xff\xfe hi"}', "application/json", 400, "not UTF-8"),
        (b'{"text": "hi"}', "application/json; charset=foo-unknown", 415, "send UTF-8"),
        (b'{"text": "hi"}', "application/json; charset=latin-1", 415, "send UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", 400, "nested more than 32 levels"),
        (b'{"text": "hi", "n": [[[[' + b"[" * 40 + b"]" * 44 + b"}", "application/json", 400, "nested"),
        (b'{"text": "hi", "n": ' + b"9" * 5000 + b"}", "application/json", 400, "more than 20 digits"),
        (b'{"text": "\\ud800 hi"}', "application/json", 400, "lone surrogate"),
        (b'{"\\udfff": "hi", "text": "hi"}', "application/json", 400, "lone surrogate"),
        (b'{"text": NaN}', "application/json", 400, "NaN is not a JSON value"),
        (b"[1]", "application/json", 400, "must be a JSON object"),
        (b"{not json", "application/json", 400, "body is not JSON (line 1, column 2)"),
    ],
)
async def test_bad_bodies_get_a_4xx_with_a_public_message(client, data: bytes, content_type: str, status: int,
                                                        message: str) -> None:
    http_, fay = client
    sid = (await new_session(http_))["session_id"]
    for path in (f"/api/sessions/{sid}/messages", "/api/sessions"):
        async with http_.post(path, data=data, headers={"Content-Type": content_type}) as r:
            assert r.status == status, await r.text()
            assert message in await error_of(r)
    assert fay.get(sid).history.messages == []  # nothing half-read reached the session or its audit
    async with http_.post(f"/api/sessions/{sid}/messages", json={"text": "how long does it take"}) as r:
        assert r.status == 200 and "event: answer" in await r.text()  # the session survived all of that


async def test_a_body_over_the_limit_is_413(client) -> None:
    http_, fay = client
    huge = b'{"persona": "' + b"x" * fay.settings.server.max_body_bytes + b'"}'
    async with http_.post("/api/sessions", data=huge) as r:
        assert r.status == 413 and "too large" in await error_of(r)


def test_the_parser_refuses_what_python_cannot_hold() -> None:
    assert parse_json_object(b'{"a": [1, -12345678901234567890, "\\u00e9"]}', max_depth=3) == {
        "a": [1, -12345678901234567890, "é"]}
    for data in (b'{"a": 123456789012345678901}', b'{"a": [[[1]]]}', b'{"a": "\\ud83d"}', b'{"a": Infinity}'):
        with pytest.raises(errors.InvalidBody):
            parse_json_object(data, max_depth=3)
    assert parse_json_object(b'{"a": "\\ud83d\\ude00"}', max_depth=3) == {"a": "😀"}  # a pair is fine


@pytest.mark.parametrize("name", ["a" * 300, "a" * 5000, "é" * 200, "x/" + "b" * 4000, "missing.js", "avatars",
                                  "../fay_core/server.py", "%2e%2e/README.md"])
async def test_absurd_static_file_names_are_404(client, name: str) -> None:
    http_, _ = client
    async with http_.get("/web/" + quote(name)) as r:
        assert r.status == 404 and await error_of(r) == "Not Found"
    async with http_.get("/web/app.js") as r:
        assert r.status == 200


async def test_an_unexpected_error_says_only_its_incident_id(settings: Settings,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    async def fail(_request: web.Request) -> web.Response:
        raise RuntimeError(f"bug reading {ROOT}/secret.db")

    app = create_app(Fay(settings))
    app.router.add_get("/api/fail", fail)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with ClientSession(base_url=str(server.make_url(""))) as http_, http_.get("/api/fail") as r:
            assert r.status == 500
            message = (await r.json())["error"]
    finally:
        await server.close()
    incident = re.fullmatch(r"internal error \(logged as ([0-9a-f]{8})\)", message)
    assert incident is not None, message
    assert any(incident.group(1) in rec.getMessage() and rec.exc_info for rec in caplog.records)


@pytest.mark.parametrize(
    ("header", "admitted"),
    [
        ("Bearer s3cret", True),
        ("bearer s3cret", True),  # RFC 7235: the scheme is case-insensitive
        ("s3cret", False),
        ("Bearer  s3cret", False),
        ("Bearer\ts3cret", False),
        ("Bearers3cret", False),
        ("Bearer s3cret junk", False),
        ("Bearer s3cret,", False),
        ("Basic s3cret", False),
        ("Bearer ", False),
    ],
)
async def test_authorization_is_exactly_bearer_and_the_token(settings: Settings, header: str,
                                                             admitted: bool) -> None:
    settings.server = ServerSettings(token="s3cret")
    server = TestServer(create_app(Fay(settings)), host="127.0.0.1")
    await server.start_server()
    try:
        async with ClientSession(base_url=str(server.make_url(""))) as http_, \
                http_.get("/api/personas", headers={"Authorization": header}) as r:
            assert (r.status == 200) == admitted, await r.text()
    finally:
        await server.close()
    assert bearer_token(None) is None


async def test_a_signed_in_session_answers_only_its_owner(client) -> None:
    http_, fay = client
    created = await new_session(http_, persona="bank_teller_en", customer_token=ALICE)
    sid, secret = created["session_id"], created["session_secret"]
    assert created["authenticated"] is True and len(secret) >= 32
    base = f"/api/sessions/{sid}"
    for headers in ({}, {"X-Fay-Session-Secret": "guess"}, {"X-Fay-Session-Secret": ""},
                    {"X-Fay-Customer-Token": "demo-bob-token"}, {"X-Fay-Session-Secret": sid}):
        for method, path, body in (("get", base, None), ("post", f"{base}/messages", {"text": "my balance?"}),
                                   ("delete", base, None)):
            async with http_.request(method, path, json=body, headers=headers) as r:
                assert r.status == 403, (method, headers)
                assert "X-Fay-Session-Secret" in await error_of(r)
    assert fay.get(sid).history.messages == []
    async with http_.post(f"{base}/messages", json={"text": "opening hours"},
                          headers={"X-Fay-Session-Secret": secret}) as r:
        assert r.status == 200 and "event: answer" in await r.text()
    async with http_.get(base, headers={"X-Fay-Customer-Token": ALICE}) as r:
        assert r.status == 200 and len((await r.json())["history"]) == 2
    async with http_.delete(base, headers={"X-Fay-Session-Secret": secret}) as r:
        assert r.status == 200


async def test_anonymous_sessions_need_only_their_id(client) -> None:
    http_, fay = client
    created = await new_session(http_)
    assert "session_secret" not in created and created["authenticated"] is False
    async with http_.get(f"/api/sessions/{created['session_id']}") as r:
        assert r.status == 200
    # a session signed in some way other than POST /api/sessions is never reachable by id alone
    fay.get(created["session_id"]).customer_id = "C1001"
    async with http_.get(f"/api/sessions/{created['session_id']}") as r:
        assert r.status == 403


async def test_session_ids_stay_out_of_info_logs(client, caplog: pytest.LogCaptureFixture) -> None:
    http_, _ = client
    caplog.set_level(logging.INFO)
    created = await new_session(http_, persona="bank_teller_en", customer_token=ALICE)
    async with http_.delete(f"/api/sessions/{created['session_id']}",
                            headers={"X-Fay-Session-Secret": created["session_secret"]}) as r:
        assert r.status == 200
    # the test server's access log is aiohttp's; `fay run` switches it off (cli.py: access_log=None)
    info = [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.INFO and rec.name != "aiohttp.access"]
    assert any("started" in m for m in info) and any("closed" in m for m in info)
    assert not [m for m in info if created["session_id"] in m or created["session_secret"] in m]


# --- generated requests against the real app --------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One HTTP request to send (``path`` raw, already percent-encoded)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes | None


class LiveServer:
    """The real app on 127.0.0.1 in a thread of its own, so that synchronous code (hypothesis) can call it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = 0
        self.anonymous = ""  # a live anonymous session's id
        self.signed_in = ""  # a live signed-in session's id
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="live-server", daemon=True)
        self._server: TestServer | None = None

    def __enter__(self) -> LiveServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=60)
        self.anonymous = json.loads(self.send(Case("POST", "/api/sessions", {}, b"{}"))[2])["session_id"]
        signed = json.dumps({"customer_token": ALICE}).encode()
        self.signed_in = json.loads(self.send(Case("POST", "/api/sessions", {}, signed))[2])["session_id"]
        return self

    async def _start(self) -> None:
        self._server = TestServer(create_app(Fay(self.settings)), host="127.0.0.1")
        await self._server.start_server()
        self.port = self._server.port or 0

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._server.close(), self._loop).result(timeout=60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def send(self, case: Case) -> tuple[int, str, bytes]:
        """``(status, content type, body)`` of ``case``'s answer."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(case.method, case.path, body=case.body, headers=case.headers)
            resp = conn.getresponse()
            return resp.status, resp.getheader("Content-Type", ""), resp.read()
        finally:
            conn.close()

    def good_request_works(self) -> bool:
        status, _, body = self.send(Case("POST", "/api/sessions", {}, b"{}"))
        if status != 201:
            return False
        sid = json.loads(body)["session_id"]
        status, _, body = self.send(Case("POST", f"/api/sessions/{sid}/messages", {}, b'{"text": "how long?"}'))
        return status == 200 and b"event: answer" in body


def live_settings(data_dir: Path) -> Settings:
    """A persona without a large knowledge base, and room for every session the cases create."""
    return test_settings(data_dir, personas_dir=ROOT / "personas", default_persona="interviewer_en",
                         server=ServerSettings(max_sessions=100_000))


_HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
_WORDS = st.sampled_from(["hi", "how long does it take", "", " ", "\ud800", "x\udfff", "é", "银行", "\x00", "a" * 5000])
_TEXT = _WORDS | st.text(max_size=30) | st.text(st.characters(categories=["Cs", "Cc", "Lo"]), max_size=5)
_LEAF = (st.none() | st.booleans() | st.integers(-(10**25), 10**25)
         | st.floats(allow_nan=True, allow_infinity=True) | _TEXT)
_JSON = st.recursive(_LEAF, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(_TEXT, inner, max_size=3), max_leaves=12)
_OBJECT = st.fixed_dictionaries({}, optional={"text": _JSON, "persona": _TEXT | st.sampled_from(
    ["bank_teller_en", "interviewer_en", "a" * 300, "../x"]) | _JSON, "customer_token": _TEXT | st.just(ALICE)})


def _encode(value: Any, how: str) -> bytes:
    if how == "ascii":
        return json.dumps(value).encode()
    text = json.dumps(value, ensure_ascii=False)
    return text.encode("utf-8", "surrogatepass") if how == "raw" else text.encode("utf-16", "surrogatepass")


_BODY = st.one_of(
    st.builds(_encode, _OBJECT | _JSON, st.sampled_from(["ascii", "raw", "utf16"])),
    st.binary(max_size=64),
    st.integers(1, 3000).map(lambda n: b'{"text": ' + b"[" * n + b"]" * n + b"}"),
    st.integers(1, 6000).map(lambda n: b'{"text": "hi", "n": ' + b"7" * n + b"}"),
)
_SEGMENT = _TEXT.map(lambda s: quote(s.encode("utf-8", "surrogatepass"), safe=""))


@st.composite
def cases(draw: st.DrawFn, anonymous: str, signed_in: str) -> Case:
    """A request to any HTTP endpoint but WebRTC's: mostly malformed, sometimes right."""
    sid = draw(st.sampled_from([anonymous, signed_in]) | _SEGMENT)
    kind = draw(st.sampled_from(["create", "message", "history", "delete", "web", "personas", "other"]))
    method, path = {
        "create": ("POST", "/api/sessions"),
        "message": ("POST", f"/api/sessions/{sid}/messages"),
        "history": ("GET", f"/api/sessions/{sid}"),
        "delete": ("DELETE", f"/api/sessions/{sid}"),
        "web": ("GET", "/web/" + draw(_SEGMENT | st.integers(200, 6000).map(lambda n: "b" * n))),
        "personas": ("GET", "/api/personas"),
        "other": (draw(st.sampled_from(["GET", "PUT", "PATCH", "POST"])), "/" + draw(_SEGMENT)),
    }[kind]
    headers: dict[str, str] = {}
    if draw(st.booleans()):
        charset = draw(st.sampled_from(["", "; charset=utf-8", "; charset=UTF8", "; charset=latin-1"])
                       | _HEADER_TEXT.map(lambda c: f"; charset={c}"))
        headers["Content-Type"] = "application/json" + charset
    for name in ("Authorization", "X-Fay-Session-Secret", "X-Fay-Customer-Token"):
        if draw(st.integers(0, 3)) == 0:
            headers[name] = draw(_HEADER_TEXT | st.just(ALICE))
    body = draw(_BODY) if method in ("POST", "PUT", "PATCH") and draw(st.integers(0, 9)) else None
    return Case(method, path, headers, body)


def check_answer(case: Case, status: int, content_type: str, body: bytes) -> None:
    """The property: no 5xx; a 4xx is ``{"error": "<public message>"}`` and nothing more."""
    assert status < 500, (case, status, body[:300])
    if status >= 400:
        assert content_type.startswith("application/json"), (case, status, content_type, body[:300])
        payload = json.loads(body)
        assert set(payload) == {"error"} and isinstance(payload["error"], str), payload
        assert not LEAKS.search(payload["error"]) and str(ROOT) not in payload["error"], (case, payload)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with LiveServer(live_settings(tmp_path_factory.mktemp("live") / "data")) as server:
        yield server


@pytest.mark.timeout(300)
# the live server's thread may touch the global `random` while a case is drawn; the strategies themselves do not
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
def test_generated_requests_never_get_a_5xx_or_internals(live: LiveServer) -> None:
    seen: dict[int, int] = {}

    @hsettings(max_examples=300, deadline=None, derandomize=True, database=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(case=cases(live.anonymous, live.signed_in))
    def property_(case: Case) -> None:
        status, content_type, body = live.send(case)
        seen[status] = seen.get(status, 0) + 1
        check_answer(case, status, content_type, body)

    property_()
    assert {400, 404, 415}.issubset(seen), seen  # the cases reached the checks they are meant to
    assert live.good_request_works()
