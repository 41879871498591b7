"""API keys, scopes and tenants through a real server: every /api/* endpoint with no key, a wrong key, a revoked
key, another tenant's key, a key without the scope and the right key; rate limits; `fay keys`; revocation seen
by a running server; knowledge collections namespaced per tenant."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from click.testing import CliRunner

from fay_core.app import Fay
from fay_core.cli import cli
from fay_core.errors import PersonaError
from fay_core.keys import KeyStore
from fay_core.knowledge import persona_collections
from fay_core.persona import parse_persona
from fay_core.server import create_app
from fay_core.settings import Settings
from fay_core.testing import test_settings
from fay_core.transport.ice import restrict_peer, rtc_configuration

LOOPBACK = {"host_addresses": ["127.0.0.1"], "remote_networks": ["127.0.0.0/8"]}


def persona(name: str, tenant: str | None, collections: list[str] | None = None, *, records: bool = False,
            paths: list[str] | None = None) -> str:
    text = f"name: {name}\nlanguage: en\ngreeting: Hello from {name}.\n"
    if tenant is not None:
        text += f"tenant: {tenant}\n"
    if records:
        text += "recording: {enabled: true}\n"
    if collections:
        text += f"knowledge:\n  collections: [{', '.join(collections)}]\n"
        if paths:
            text += f"  paths: [{', '.join(paths)}]\n"
    return text


@dataclass
class World:
    """A server with personas of three tenants (default, bank-a, bank-b) and keys of bank-a and bank-b."""

    fay: Fay
    server: TestServer
    store: KeyStore
    keys: dict[str, str] = field(default_factory=dict)
    url: str = ""

    def auth(self, who: str | None) -> dict[str, str]:
        if who is None:
            return {}
        return {"Authorization": f"Bearer {self.keys.get(who, who)}"}


def world_settings(tmp_path: Path, **overrides: Any) -> Settings:
    personas = tmp_path / "personas"
    personas.mkdir()
    (personas / "plain.yaml").write_text(persona("Plain", None))
    (personas / "teller_a.yaml").write_text(persona("Teller A", "bank-a", records=True))
    (personas / "teller_a2.yaml").write_text(persona("Teller A2", "bank-a"))
    (personas / "teller_b.yaml").write_text(persona("Teller B", "bank-b"))
    (tmp_path / "kb-a").mkdir()  # kb_a's knowledge folder (what the console writes to)
    (tmp_path / "kb-a" / "faq.yaml").write_text(
        "faq:\n  - id: phone\n    question: What is the phone number of Bank A?\n    answer: Call 555-0100.\n")
    (personas / "kb_a.yaml").write_text(persona("Knows A", "bank-a", ["faq"], paths=["../kb-a"]))
    (personas / "kb_b.yaml").write_text(persona("Knows B", "bank-b", ["faq"]))
    overrides.setdefault("keys", {"sessions_per_minute": 1000, "messages_per_minute": 1000})
    return test_settings(tmp_path / "data", personas_dir=personas, default_persona="plain",
                         webrtc={**LOOPBACK, "connect_timeout_s": 3}, **overrides)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    settings = world_settings(tmp_path)
    store = KeyStore.in_data_dir(settings.data_dir)
    keys = {}
    for who, tenant, scopes in [("a_chat", "bank-a", ["chat"]), ("a_admin", "bank-a", ["admin"]),
                                ("a_ingest", "bank-a", ["ingest"]), ("a_all", "bank-a", ["chat", "admin", "ingest"]),
                                ("b_all", "bank-b", ["chat", "admin", "ingest"]),
                                ("revoked", "bank-a", ["chat", "admin", "ingest"])]:
        record, keys[who] = store.create(name=who, tenant=tenant, scopes=scopes)
        if who == "revoked":
            store.revoke(record.id)
    # shaped like a key, with a real key's id: only the secret is wrong
    real_id = keys["a_all"].split("_")[1]
    keys["wrong"] = f"fay_{real_id}_{'x' * 43}"
    fay = Fay(settings)
    server = TestServer(create_app(fay), host="127.0.0.1")
    await server.start_server()
    yield World(fay, server, store, keys, str(server.make_url("")))
    await server.close()


# --- the route matrix -----------------------------------------------------------------------------------------

Result = tuple[int, Any, dict[str, str]]


async def call(http: ClientSession, method: str, path: str, who: str | None, w: World, **kw: Any) -> Result:
    async with http.request(method, path, headers={**w.auth(who), **kw.pop("headers", {})}, **kw) as r:
        text = await r.text()
        body = json.loads(text) if r.content_type == "application/json" else text
        return r.status, body, dict(r.headers)


async def new_session(http: ClientSession, w: World, who: str = "a_all", persona_id: str = "teller_a") -> str:
    status, body, _ = await call(http, "POST", "/api/sessions", who, w, json={"persona": persona_id})
    assert status == 201, body
    return str(body["session_id"])


async def sample_offer(w: World) -> str:
    from aiortc import RTCPeerConnection

    ice = w.fay.settings.webrtc
    pc = RTCPeerConnection(rtc_configuration(ice))
    pc.createDataChannel("fay")
    restrict_peer(pc, ice)
    await pc.setLocalDescription(await pc.createOffer())  # never connected: a sample offer
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


@dataclass
class Case:
    """How to call one endpoint as tenant bank-a (``own``), and what bank-b's key must get (``other``)."""

    scope: str
    request: Callable[[ClientSession, World], Awaitable[tuple[str, str, dict[str, Any]]]]
    other: Callable[[ClientSession, World], Awaitable[None]]


async def _personas(http: ClientSession, w: World) -> tuple[str, str, dict[str, Any]]:
    return "GET", "/api/personas", {}


async def _personas_other(http: ClientSession, w: World) -> None:
    status, body, _ = await call(http, "GET", "/api/personas", "b_all", w)
    assert status == 200 and {p["id"] for p in body} == {"teller_b", "kb_b"}, body


async def _create(http: ClientSession, w: World) -> tuple[str, str, dict[str, Any]]:
    return "POST", "/api/sessions", {"json": {"persona": "teller_a"}}


async def _create_other(http: ClientSession, w: World) -> None:
    status, theirs, _ = await call(http, "POST", "/api/sessions", "b_all", w, json={"persona": "teller_a"})
    _, unknown, _ = await call(http, "POST", "/api/sessions", "b_all", w, json={"persona": "nobody"})
    assert status == 404 and theirs["error"] == unknown["error"].replace("nobody", "teller_a"), (theirs, unknown)
    assert "teller_a" not in unknown["error"] and "teller_b" in unknown["error"]  # lists only bank-b's personas


def _session_other(method: str, suffix: str = "", **kw: Any) -> Callable[[ClientSession, World], Awaitable[None]]:
    async def check(http: ClientSession, w: World) -> None:
        sid = await new_session(http, w)
        theirs = await call(http, method, f"/api/sessions/{sid}{suffix}", "b_all", w, **kw)
        fake = "0" * len(sid)
        unknown = await call(http, method, f"/api/sessions/{fake}{suffix}", "b_all", w, **kw)
        assert theirs[0] == unknown[0] == 404, (theirs, unknown)
        assert theirs[1]["error"] == unknown[1]["error"].replace(fake, sid)
        status, body, _ = await call(http, "GET", f"/api/sessions/{sid}", "a_all", w)
        assert status == 200 and body["history"] == []  # still there, untouched

    return check


def _session_request(method: str, suffix: str = "", **kw: Any
                     ) -> Callable[[ClientSession, World], Awaitable[tuple[str, str, dict[str, Any]]]]:
    async def make(http: ClientSession, w: World) -> tuple[str, str, dict[str, Any]]:
        return method, f"/api/sessions/{await new_session(http, w)}{suffix}", kw

    return make


async def _list_sessions(http: ClientSession, w: World) -> tuple[str, str, dict[str, Any]]:
    return "GET", "/api/sessions", {}


async def _list_sessions_other(http: ClientSession, w: World) -> None:
    mine = await new_session(http, w, "b_all", "teller_b")
    theirs = await new_session(http, w)
    status, body, _ = await call(http, "GET", "/api/sessions", "b_all", w)
    ids = {s["session_id"] for s in body}
    assert status == 200 and mine in ids and theirs not in ids, body
    status, body, _ = await call(http, "GET", "/api/sessions", "a_admin", w)
    assert theirs in {s["session_id"] for s in body} and mine not in {s["session_id"] for s in body}


async def _ingest(http: ClientSession, w: World) -> tuple[str, str, dict[str, Any]]:
    return "POST", "/api/knowledge/notes/documents", {"json": {"id": "hours", "text": "Open nine to five."}}


async def _ingest_other(http: ClientSession, w: World) -> None:
    body = {"id": "hours", "title": "Hours", "text": "Bank B opens at dawn."}
    status, out, _ = await call(http, "POST", "/api/knowledge/notes/documents", "b_all", w, json=body)
    assert status == 201 and out["collection"] == "notes", out
    kb = w.fay.knowledge.base()
    assert kb.has("tenant.bank-b.notes") and not kb.has("notes")  # its own namespace, nothing of bank-a's touched
    a_texts = [h.entry.text for h in kb.search("opens", ["tenant.bank-a.notes"])]
    assert a_texts and all("dawn" not in t for t in a_texts)


async def _cluster(http: ClientSession, w: World) -> tuple[str, str, dict[str, Any]]:
    return "GET", "/api/cluster", {}


async def _cluster_other(http: ClientSession, w: World) -> None:
    sid = await new_session(http, w)
    status, body, _ = await call(http, "GET", "/api/cluster", "b_all", w)
    assert status == 200 and body["enabled"] is False and len(body["nodes"]) == 1, body
    assert body["nodes"][0]["load"] == len(w.fay.sessions)  # node-level figures: all tenants' sessions counted
    assert sid not in json.dumps(body) and "teller" not in json.dumps(body)  # nothing of a tenant named


async def _config(http: ClientSession, w: World) -> tuple[str, str, dict[str, Any]]:
    return "GET", "/api/webrtc/config", {}


async def _config_other(http: ClientSession, w: World) -> None:
    status, body, _ = await call(http, "GET", "/api/webrtc/config", "b_all", w)
    assert status == 200 and "iceServers" in body  # nothing of a tenant in it


async def _offer(http: ClientSession, w: World) -> tuple[str, str, dict[str, Any]]:
    return "POST", "/api/webrtc/offer", {"json": {"sdp": await sample_offer(w), "type": "offer",
                                                  "persona": "teller_a"}}


async def _offer_other(http: ClientSession, w: World) -> None:
    sdp = await sample_offer(w)
    theirs = await call(http, "POST", "/api/webrtc/offer", "b_all", w,
                        json={"sdp": sdp, "type": "offer", "persona": "teller_a"})
    unknown = await call(http, "POST", "/api/webrtc/offer", "b_all", w,
                         json={"sdp": sdp, "type": "offer", "persona": "nobody"})
    assert theirs[0] == unknown[0] == 404 and theirs[1]["error"] == unknown[1]["error"].replace("nobody", "teller_a")
    assert not any(s.persona.id == "teller_a" and s.tenant == "bank-b" for s in w.fay.sessions.values())


def _stored_report(w: World) -> str:
    """A role-play report of a bank-a session, as the report writer stores it (the scoring is not under test here)."""
    sid = uuid.uuid4().hex
    card = {"criteria": [{"criterion": "Clarity", "score": 5.0, "max_score": 10, "weight": 1, "checks": [],
                          "violations": []}], "metrics": {}, "total": 50.0}
    w.fay.assembly.reports().save({"session_id": sid, "tenant": "bank-a", "persona": "teller_a", "trainee": None,
                                   "transcript": {"turns": []}, "scorecard": card, "error": None, "overrides": {}})
    return sid


def _report_request(suffix: str = "", **kw: Any
                    ) -> Callable[[ClientSession, World], Awaitable[tuple[str, str, dict[str, Any]]]]:
    async def make(http: ClientSession, w: World) -> tuple[str, str, dict[str, Any]]:
        return "POST" if suffix else "GET", f"/api/sessions/{_stored_report(w)}/report{suffix}", kw

    return make


def _report_other(suffix: str = "", **kw: Any) -> Callable[[ClientSession, World], Awaitable[None]]:
    async def check(http: ClientSession, w: World) -> None:
        sid = _stored_report(w)
        method = "POST" if suffix else "GET"
        theirs = await call(http, method, f"/api/sessions/{sid}/report{suffix}", "b_all", w, **kw)
        fake = "0" * len(sid)
        unknown = await call(http, method, f"/api/sessions/{fake}/report{suffix}", "b_all", w, **kw)
        assert theirs[0] == unknown[0] == 404, (theirs, unknown)
        assert theirs[1]["error"] == unknown[1]["error"].replace(fake, sid)
        status, body, _ = await call(http, "GET", f"/api/sessions/{sid}/report", "a_chat", w)
        assert status == 200 and body["overrides"] == {}  # still there, untouched

    return check


OVERRIDE = {"json": {"criterion": "Clarity", "score": 7, "comment": "clearer than the AI says"}}


# --- the console (fay_core.console.routes): bank-a's persona kb_a has a knowledge folder ----------------------


def _get(path: str) -> Callable[[ClientSession, World], Awaitable[tuple[str, str, dict[str, Any]]]]:
    async def make(http: ClientSession, w: World) -> tuple[str, str, dict[str, Any]]:
        return "GET", path, {}

    return make


async def _asked(http: ClientSession, w: World, text: str, who: str = "a_all", persona_id: str = "kb_a") -> str:
    sid = await new_session(http, w, who, persona_id)
    async with http.post(f"/api/sessions/{sid}/messages", json={"text": text}, headers=w.auth(who)) as r:
        assert r.status == 200
        await r.read()
    return sid


async def _console_sessions_other(http: ClientSession, w: World) -> None:
    theirs = await _asked(http, w, "What is the phone number of Bank A?")
    status, body, _ = await call(http, "GET", "/api/console/sessions", "b_all", w)
    seen = {s["session_id"] for s in body["live"]} | {c["session_id"] for c in body["recent"]}
    assert status == 200 and theirs not in seen, body
    status, body, _ = await call(http, "GET", "/api/console/sessions", "a_admin", w)
    assert theirs in {c["session_id"] for c in body["recent"]}


async def _console_review(http: ClientSession, w: World) -> tuple[str, str, dict[str, Any]]:
    return "GET", f"/api/console/sessions/{await new_session(http, w)}", {}


async def _console_review_other(http: ClientSession, w: World) -> None:
    for sid in (await new_session(http, w), await _asked(http, w, "Hello?")):  # live, and with audit records
        theirs = await call(http, "GET", f"/api/console/sessions/{sid}", "b_all", w)
        fake = "0" * len(sid)
        unknown = await call(http, "GET", f"/api/console/sessions/{fake}", "b_all", w)
        assert theirs[0] == unknown[0] == 404 and theirs[1]["error"] == unknown[1]["error"].replace(fake, sid)


async def _console_stats_other(http: ClientSession, w: World) -> None:
    before = (await call(http, "GET", "/api/console/stats", "b_all", w))[1]["days"][-1]["turns"]
    await _asked(http, w, "Hello there?")
    status, body, _ = await call(http, "GET", "/api/console/stats", "b_all", w)
    assert status == 200 and body["days"][-1]["turns"] == before
    assert (await call(http, "GET", "/api/console/stats", "a_admin", w))[1]["days"][-1]["turns"] >= 1


async def _console_declined_other(http: ClientSession, w: World) -> None:
    question = f"Do you rent out submarines {uuid.uuid4().hex[:6]}?"
    await _asked(http, w, question)
    status, body, _ = await call(http, "GET", "/api/console/declined", "b_all", w)
    assert status == 200 and all(g["persona"] != "kb_a" for g in body["groups"]), body
    _, body, _ = await call(http, "GET", "/api/console/declined", "a_admin", w)
    assert any(q["text"] == question for g in body["groups"] for q in g["questions"])


def _answer(question: str | None = None) -> dict[str, Any]:
    return {"json": {"persona": "kb_a", "question": question or f"Question {uuid.uuid4().hex[:8]}?",
                     "answer": "An answer."}}


async def _console_answer(http: ClientSession, w: World) -> tuple[str, str, dict[str, Any]]:
    return "POST", "/api/console/declined/answer", _answer()


async def _same_as_unknown_persona(http: ClientSession, w: World, method: str, path: str,
                                   kw: Callable[[], dict[str, Any]]) -> None:
    """bank-b's key on bank-a's persona kb_a: exactly what a persona that does not exist gets."""
    theirs = await call(http, method, path.format(persona="kb_a"), "b_all", w, **kw())
    unknown = await call(http, method, path.format(persona="nobody"), "b_all", w, **kw())
    assert theirs[0] == unknown[0] == 404, (theirs, unknown)
    assert theirs[1]["error"] == unknown[1]["error"].replace("nobody", "kb_a")
    assert "kb_a" not in unknown[1]["error"]


async def _console_answer_other(http: ClientSession, w: World) -> None:
    theirs = await call(http, "POST", "/api/console/declined/answer", "b_all", w, **_answer("Other?"))
    unknown = await call(http, "POST", "/api/console/declined/answer", "b_all", w,
                         json={**_answer("Other?")["json"], "persona": "nobody"})
    assert theirs[0] == unknown[0] == 404 and theirs[1]["error"] == unknown[1]["error"].replace("nobody", "kb_a")
    faq = (w.fay.settings.personas_dir.parent / "kb-a" / "console-faq.yaml")
    assert "Other?" not in (faq.read_text() if faq.exists() else "")


async def _console_knowledge_other(http: ClientSession, w: World) -> None:
    status, body, _ = await call(http, "GET", "/api/console/knowledge", "b_all", w)
    assert status == 200 and {p["persona"] for p in body["personas"]} == {"kb_b"}, body
    _, body, _ = await call(http, "GET", "/api/console/knowledge", "a_admin", w)
    assert {p["persona"] for p in body["personas"]} == {"kb_a"}


def _console_persona(method: str, path: str, kw: Callable[[World], dict[str, Any]] = lambda w: {}
                     ) -> tuple[Callable[[ClientSession, World], Awaitable[tuple[str, str, dict[str, Any]]]],
                                Callable[[ClientSession, World], Awaitable[None]]]:
    """The request and bank-b's check of a console endpoint on persona kb_a (``kw`` builds its arguments)."""
    async def make(http: ClientSession, w: World) -> tuple[str, str, dict[str, Any]]:
        return method, path.format(persona="kb_a"), kw(w)

    async def check(http: ClientSession, w: World) -> None:
        await _same_as_unknown_persona(http, w, method, path, kw=lambda: kw(w))

    return make, check


def _upload_form(w: World) -> dict[str, Any]:
    from aiohttp import FormData

    form = FormData()
    form.add_field("file", b"# Lockers\n\nLockers cost 5 a day.\n", filename=f"lockers-{uuid.uuid4().hex[:6]}.md")
    return {"data": form}


def _a_document(w: World) -> dict[str, Any]:
    uploads = w.fay.settings.personas_dir.parent / "kb-a" / "uploads"
    uploads.mkdir(exist_ok=True)
    name = f"doc-{uuid.uuid4().hex[:6]}.md"
    (uploads / name).write_text("# A note\n\nNothing much.\n")
    return {"params": {"path": f"uploads/{name}"}}


def _an_entry(w: World) -> dict[str, Any]:
    from fay_core.console.knowledge import add_faq

    entry = add_faq(w.fay.settings.personas_dir.parent / "kb-a", f"Q {uuid.uuid4().hex[:6]}?", "A.", [])
    return {"params": {"id": entry}}


async def _console_job(http: ClientSession, w: World) -> tuple[str, str, dict[str, Any]]:
    status, body, _ = await call(http, "POST", "/api/console/declined/answer", "a_all", w, **_answer())
    assert status == 202, body
    return "GET", f"/api/console/jobs/{body['job']['id']}", {}


async def _console_job_other(http: ClientSession, w: World) -> None:
    path = (await _console_job(http, w))[1]
    theirs = await call(http, "GET", path, "b_all", w)
    unknown = await call(http, "GET", "/api/console/jobs/0000000000000000", "b_all", w)
    assert theirs[0] == unknown[0] == 404 and theirs[1]["error"] == unknown[1]["error"].replace(
        "0000000000000000", path.rsplit("/", 1)[1])


SUITE_A = "persona: kb_a\ncases:\n  - {id: phone, ask: \"What is the phone number of Bank A?\", contains: 555-0100}\n"


def _suite(w: World) -> None:
    evals = w.fay.settings.personas_dir / "evals"
    evals.mkdir(exist_ok=True)
    (evals / "bank_a.eval.yaml").write_text(SUITE_A)


async def _console_evals_other(http: ClientSession, w: World) -> None:
    _suite(w)
    status, body, _ = await call(http, "GET", "/api/console/evals", "b_all", w)
    assert status == 200 and body["suites"] == [] and body["runs"] == [], body
    _, body, _ = await call(http, "GET", "/api/console/evals", "a_admin", w)
    assert [s["suite"] for s in body["suites"]] == ["bank_a"]


async def _console_run_eval(http: ClientSession, w: World) -> tuple[str, str, dict[str, Any]]:
    _suite(w)
    return "POST", "/api/console/evals", {"json": {"suite": "bank_a"}}


async def _console_run_eval_other(http: ClientSession, w: World) -> None:
    _suite(w)
    theirs = await call(http, "POST", "/api/console/evals", "b_all", w, json={"suite": "bank_a"})
    unknown = await call(http, "POST", "/api/console/evals", "b_all", w, json={"suite": "nothing"})
    assert theirs[0] == unknown[0] == 404 and theirs[1]["error"] == unknown[1]["error"].replace("nothing", "bank_a")


async def _an_eval_run(http: ClientSession, w: World) -> str:
    _suite(w)
    status, body, _ = await call(http, "POST", "/api/console/evals", "a_all", w, json={"suite": "bank_a"})
    assert status == 202, body
    for _ in range(400):
        _, job, _ = await call(http, "GET", f"/api/console/jobs/{body['job']['id']}", "a_all", w)
        if job["state"] != "running":
            assert job["state"] == "done", job
            return str(job["result"]["run"])
        await asyncio.sleep(0.05)
    raise AssertionError("the eval run did not end")


async def _console_eval_run(http: ClientSession, w: World) -> tuple[str, str, dict[str, Any]]:
    return "GET", f"/api/console/evals/{await _an_eval_run(http, w)}", {}


async def _console_eval_run_other(http: ClientSession, w: World) -> None:
    run = await _an_eval_run(http, w)
    fake = "20000101T000000Z-000000"
    theirs = await call(http, "GET", f"/api/console/evals/{run}", "b_all", w)
    unknown = await call(http, "GET", f"/api/console/evals/{fake}", "b_all", w)
    assert theirs[0] == unknown[0] == 404 and theirs[1]["error"] == unknown[1]["error"].replace(fake, run)


def _console_audit_other(path: str) -> Callable[[ClientSession, World], Awaitable[None]]:
    async def check(http: ClientSession, w: World) -> None:
        sid = await _asked(http, w, "Is the Aurora vault open at night?")
        status, body, _ = await call(http, "GET", path, "b_all", w, params={"session": sid})
        assert status == 200 and body in ({"total": 0, "records": []}, ""), body  # JSON search, or an empty export
        _, body, _ = await call(http, "GET", path, "a_admin", w, params={"session": sid})
        assert "Aurora vault" in json.dumps(body)

    return check


def _console_cases() -> dict[tuple[str, str], Case]:
    persona_routes = {
        ("GET", "/api/console/knowledge/{persona}/entries"): _console_persona(
            "GET", "/api/console/knowledge/{persona}/entries"),
        ("POST", "/api/console/knowledge/{persona}/documents"): _console_persona(
            "POST", "/api/console/knowledge/{persona}/documents", _upload_form),
        ("POST", "/api/console/knowledge/{persona}/ingest"): _console_persona(
            "POST", "/api/console/knowledge/{persona}/ingest"),
        ("DELETE", "/api/console/knowledge/{persona}/documents"): _console_persona(
            "DELETE", "/api/console/knowledge/{persona}/documents", _a_document),
        ("DELETE", "/api/console/knowledge/{persona}/entries"): _console_persona(
            "DELETE", "/api/console/knowledge/{persona}/entries", _an_entry),
    }
    return {
        ("GET", "/api/console/sessions"): Case("admin", _get("/api/console/sessions"), _console_sessions_other),
        ("GET", "/api/console/sessions/{session_id}"): Case("admin", _console_review, _console_review_other),
        ("GET", "/api/console/stats"): Case("admin", _get("/api/console/stats"), _console_stats_other),
        ("GET", "/api/console/declined"): Case("admin", _get("/api/console/declined"), _console_declined_other),
        ("POST", "/api/console/declined/answer"): Case("admin", _console_answer, _console_answer_other),
        ("GET", "/api/console/knowledge"): Case("admin", _get("/api/console/knowledge"), _console_knowledge_other),
        **{key: Case("admin", make, check) for key, (make, check) in persona_routes.items()},
        ("GET", "/api/console/jobs/{job_id}"): Case("admin", _console_job, _console_job_other),
        ("GET", "/api/console/evals"): Case("admin", _get("/api/console/evals"), _console_evals_other),
        ("POST", "/api/console/evals"): Case("admin", _console_run_eval, _console_run_eval_other),
        ("GET", "/api/console/evals/{run_id}"): Case("admin", _console_eval_run, _console_eval_run_other),
        ("GET", "/api/console/audit"): Case("admin", _get("/api/console/audit"),
                                            _console_audit_other("/api/console/audit")),
        ("GET", "/api/console/audit/export"): Case("admin", _get("/api/console/audit/export"),
                                                   _console_audit_other("/api/console/audit/export")),
    }


def _case_table() -> dict[tuple[str, str], Case]:
    return {
        ("GET", "/api/personas"): Case("chat", _personas, _personas_other),
        ("POST", "/api/sessions"): Case("chat", _create, _create_other),
        ("POST", "/api/sessions/{session_id}/messages"): Case(
            "chat", _session_request("POST", "/messages", json={"text": "hello"}),
            _session_other("POST", "/messages", json={"text": "hello"})),
        ("GET", "/api/sessions/{session_id}"): Case("chat", _session_request("GET"), _session_other("GET")),
        ("POST", "/api/sessions/{session_id}/consent"): Case(
            "chat", _session_request("POST", "/consent", json={"recording": True}),
            _session_other("POST", "/consent", json={"recording": True})),
        ("DELETE", "/api/sessions/{session_id}"): Case("chat", _session_request("DELETE"),
                                                       _session_other("DELETE")),
        ("GET", "/api/sessions"): Case("admin", _list_sessions, _list_sessions_other),
        ("GET", "/api/sessions/{session_id}/audit"): Case("admin", _session_request("GET", "/audit"),
                                                          _session_other("GET", "/audit")),
        ("GET", "/api/sessions/{session_id}/report"): Case("chat", _report_request(), _report_other()),
        ("POST", "/api/sessions/{session_id}/report/overrides"): Case(
            "admin", _report_request("/overrides", **OVERRIDE), _report_other("/overrides", **OVERRIDE)),
        ("POST", "/api/knowledge/{collection}/documents"): Case("ingest", _ingest, _ingest_other),
        ("GET", "/api/cluster"): Case("admin", _cluster, _cluster_other),
        ("GET", "/api/webrtc/config"): Case("chat", _config, _config_other),
        ("POST", "/api/webrtc/offer"): Case("chat", _offer, _offer_other),
        **_console_cases(),
    }


#: a key of bank-a without the scope named
WITHOUT = {"chat": "a_admin", "admin": "a_chat", "ingest": "a_chat"}
#: a key of bank-a with only the scope named
WITH = {"chat": "a_chat", "admin": "a_admin", "ingest": "a_ingest"}


async def test_every_api_endpoint_checks_keys_scopes_and_tenants(world: World) -> None:
    w = world
    table = _case_table()
    routes = {(r.method, r.resource.canonical) for r in w.server.app.router.routes()
              if r.resource is not None and r.resource.canonical.startswith("/api/") and r.method != "HEAD"}
    assert routes == set(table), f"endpoints without a case here: {routes - set(table)}; stale: {set(table) - routes}"
    async with ClientSession(base_url=w.url) as http:
        for (method, path), case in table.items():
            what = f"{method} {path}"
            for who, words in ((None, "API key is required"), ("wrong", "wrong API key"), ("revoked", "revoked"),
                               ("fay_nothing", "wrong API key"), ("s3cret", "wrong API key")):
                m, url, kw = await case.request(http, w)
                status, body, headers = await call(http, m, url, who, w, **kw)
                assert status == 401 and words in body["error"] and "Bearer" in body["error"], (what, who, body)
            m, url, kw = await case.request(http, w)
            status, body, _ = await call(http, m, url, WITHOUT[case.scope], w, **kw)
            assert status == 403 and f"'{case.scope}' scope" in body["error"], (what, body)
            for who in (WITH[case.scope], "a_all"):
                m, url, kw = await case.request(http, w)
                status, body, _ = await call(http, m, url, who, w, **kw)
                assert 200 <= status < 300, (what, who, status, body)
            await case.other(http, w)


async def test_other_tenants_things_are_absent_or_unknown_in_detail(world: World) -> None:
    w = world
    async with ClientSession(base_url=w.url) as http:
        status, body, _ = await call(http, "GET", "/api/personas", "a_chat", w)
        listed = {p["id"]: p for p in body}
        assert set(listed) == {"teller_a", "teller_a2", "kb_a"}  # no default tenant's, no bank-b's
        assert [p for p in listed.values() if p["default"]] == [listed["kb_a"]]  # the first of its own
        status, body, _ = await call(http, "POST", "/api/sessions", "a_chat", w, json={})
        assert status == 201 and body["persona"] == "kb_a"  # no persona named: the tenant's first, not 'plain'
        sid = body["session_id"]
        assert w.fay.sessions[sid].tenant == "bank-a"
        async with http.post(f"/api/sessions/{sid}/messages", json={"text": "hello"}, headers=w.auth("a_chat")) as r:
            assert r.status == 200
            await r.read()
        status, body, _ = await call(http, "GET", f"/api/sessions/{sid}/audit", "a_admin", w)
        records = body["records"]
        assert status == 200 and {r["kind"] for r in records} >= {"user", "answer"}
        assert all(r["tenant"] == "bank-a" for r in records if r["kind"] in ("user", "answer"))
        # once closed, its audit records stay the tenant's, and only its
        await call(http, "DELETE", f"/api/sessions/{sid}", "a_chat", w)
        assert (await call(http, "GET", f"/api/sessions/{sid}/audit", "a_admin", w))[0] == 200
        assert (await call(http, "GET", f"/api/sessions/{sid}/audit", "b_all", w))[0] == 404
        other = await new_session(http, w, "a_all", "teller_a2")
        assert (await call(http, "GET", f"/api/sessions/{other}", "b_all", w))[0] == 404
        assert (await call(http, "GET", f"/api/sessions/{other}", "a_chat", w))[0] == 200  # any key of its tenant


# --- modes ------------------------------------------------------------------------------------------------------


async def serve(settings: Settings) -> tuple[Fay, TestServer]:
    fay = Fay(settings)
    server = TestServer(create_app(fay), host="127.0.0.1")
    await server.start_server()
    return fay, server


async def test_open_and_token_modes_stay_as_they_were_until_keys_exist(tmp_path: Path) -> None:
    settings = world_settings(tmp_path, server={"token": "s3cret"})
    fay, server = await serve(settings)
    store = KeyStore.in_data_dir(settings.data_dir)
    try:
        async with ClientSession(base_url=str(server.make_url(""))) as http:
            async with http.get("/api/personas") as r:
                assert r.status == 401 and "FAY_SERVER__TOKEN" in (await r.json())["error"]
            token = {"Authorization": "Bearer s3cret"}
            async with http.get("/api/personas", headers=token) as r:
                assert r.status == 200 and {p["id"] for p in await r.json()} == {"plain"}  # the default tenant's
            _, key = store.create(name="teller app", tenant="bank-a")
            async with http.get("/api/personas") as r:
                assert r.status == 401 and "API key is required" in (await r.json())["error"]
            async with http.get("/api/personas", headers=token) as r:
                assert r.status == 200  # the token still works once keys exist
            async with http.get("/api/personas", headers={"Authorization": f"Bearer {key}"}) as r:
                assert r.status == 200 and {p["id"] for p in await r.json()} == {"teller_a", "teller_a2", "kb_a"}
            async with http.get("/health") as r:
                assert r.status == 200
    finally:
        await server.close()


async def test_revocation_reaches_a_running_server_and_revoking_the_last_key_does_not_open_it(tmp_path: Path) -> None:
    settings = world_settings(tmp_path)
    fay, server = await serve(settings)
    try:
        async with ClientSession(base_url=str(server.make_url(""))) as http:
            async with http.get("/api/personas") as r:
                assert r.status == 200  # open: no token, no keys
            runner = CliRunner()
            env = {"FAY_DATA_DIR": str(settings.data_dir), "FAY_PERSONAS_DIR": str(settings.personas_dir)}
            result = runner.invoke(cli, ["keys", "create", "--tenant", "bank-a", "--name", "kiosk 7"], env=env)
            assert result.exit_code == 0, result.output
            key = result.stdout.strip().splitlines()[-1]
            key_id = key.split("_")[1]
            auth = {"Authorization": f"Bearer {key}"}
            async with http.get("/api/personas", headers=auth) as r:
                assert r.status == 200
            async with http.get("/api/personas") as r:
                assert r.status == 401  # keys exist now
            result = runner.invoke(cli, ["keys", "revoke", key_id], env=env)
            assert result.exit_code == 0 and "revoked" in result.output
            async with http.get("/api/personas", headers=auth) as r:
                assert r.status == 401 and "revoked" in (await r.json())["error"]
            async with http.get("/api/personas") as r:
                assert r.status == 401  # every key revoked: still closed
    finally:
        await server.close()


def test_keys_cli_create_list_revoke(tmp_path: Path) -> None:
    runner = CliRunner()
    data = tmp_path / "data"
    env = {"FAY_DATA_DIR": str(data)}
    result = runner.invoke(cli, ["keys", "list"], env=env)
    assert result.exit_code == 0 and "no keys" in result.output
    result = runner.invoke(cli, ["keys", "create", "--tenant", "bank-a", "--name", "auditor", "--scope", "admin",
                                 "--scope", "chat", "--sessions-per-minute", "5"], env=env)
    assert result.exit_code == 0, result.output
    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith("fay_") and len(key.split("_", 2)[2]) >= 43
    path = data / "keys.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    raw = path.read_text()
    assert key not in raw and key.split("_", 2)[2] not in raw  # only the digest is stored
    result = runner.invoke(cli, ["keys", "list", "--json"], env=env)
    listed = json.loads(result.stdout)
    assert listed == [{**listed[0], "tenant": "bank-a", "name": "auditor", "scopes": ["admin", "chat"],
                       "revoked": None, "sessions_per_minute": 5, "messages_per_minute": None}]
    assert key not in result.output and "digest" not in listed[0]
    text = runner.invoke(cli, ["keys", "list"], env=env).output
    assert listed[0]["id"] in text and "active" in text and key not in text
    result = runner.invoke(cli, ["keys", "revoke", listed[0]["id"]], env=env)
    assert result.exit_code == 0
    assert json.loads(runner.invoke(cli, ["keys", "list", "--json"], env=env).stdout)[0]["revoked"]
    # bad input: a clear error, exit code 2, nothing written
    for args, words in ((["revoke", "nope"], "no key 'nope'"),
                        (["create", "--tenant", "Bank A!", "--name", "x"], "not a tenant name")):
        result = runner.invoke(cli, ["keys", *args], env=env)
        assert result.exit_code == 2 and words in result.output, result.output
    result = runner.invoke(cli, ["keys", "create", "--tenant", "a", "--name", "x", "--scope", "root"], env=env)
    assert result.exit_code == 2 and "root" in result.output
    assert len(json.loads(path.read_text())["keys"]) == 1


async def test_a_malformed_key_store_refuses_every_key_rather_than_opening(tmp_path: Path) -> None:
    settings = world_settings(tmp_path)
    store = KeyStore.in_data_dir(settings.data_dir)
    _, key = store.create(name="x", tenant="bank-a")
    fay, server = await serve(settings)
    try:
        async with ClientSession(base_url=str(server.make_url(""))) as http:
            store.path.write_text("{not json")
            async with http.get("/api/personas", headers={"Authorization": f"Bearer {key}"}) as r:
                body = await r.json()
                assert r.status == 503 and "cannot be checked" in body["error"] and r.headers["Retry-After"]
                assert str(tmp_path) not in body["error"]
            async with http.get("/health") as r:
                assert r.status == 200
    finally:
        await server.close()


# --- rate limits ------------------------------------------------------------------------------------------------


async def test_per_key_rate_limits_answer_429_with_retry_after(tmp_path: Path) -> None:
    settings = world_settings(tmp_path, keys={"sessions_per_minute": 100, "messages_per_minute": 3})
    store = KeyStore.in_data_dir(settings.data_dir)
    _, slow = store.create(name="slow", tenant="bank-a", sessions_per_minute=2)
    _, other = store.create(name="other", tenant="bank-a")
    fay, server = await serve(settings)
    try:
        async with ClientSession(base_url=str(server.make_url(""))) as http:
            def auth(key: str) -> dict[str, str]:
                return {"Authorization": f"Bearer {key}"}

            statuses = []
            for _ in range(3):
                async with http.post("/api/sessions", json={"persona": "teller_a"}, headers=auth(slow)) as r:
                    statuses.append(r.status)
                    if r.status == 429:
                        body, retry = await r.json(), int(r.headers["Retry-After"])
            assert statuses == [201, 201, 429]
            assert "at most 2 a minute" in body["error"] and 1 <= retry <= 30  # one token every 30 s
            async with http.post("/api/sessions", json={"persona": "teller_a"}, headers=auth(other)) as r:
                assert r.status == 201  # another key has its own bucket
                sid = (await r.json())["session_id"]
            got = []
            for _ in range(4):  # messages: the default of keys.messages_per_minute (3)
                async with http.post(f"/api/sessions/{sid}/messages", json={"text": "hi"}, headers=auth(other)) as r:
                    got.append(r.status)
                    await r.read()
                    if r.status == 429:
                        assert int(r.headers["Retry-After"]) >= 1
            assert got == [200, 200, 200, 429]
    finally:
        await server.close()


# --- knowledge --------------------------------------------------------------------------------------------------


async def test_knowledge_collections_are_the_personas_tenants(world: World) -> None:
    w = world
    personas = w.fay.personas
    assert persona_collections(personas.get("kb_a")) == ["tenant.bank-a.faq"]
    assert persona_collections(personas.get("kb_b")) == ["tenant.bank-b.faq"]
    assert persona_collections(personas.get("plain")) == ["persona-plain"]  # the default tenant's, as before
    with pytest.raises(PersonaError, match="knowledge.collections: .*reserved"):
        parse_persona("name: Sneaky\nknowledge:\n  collections: [tenant.bank-a.faq]\n", "sneaky.yaml")
    with pytest.raises(PersonaError, match="tenant"):
        parse_persona("name: Bad\ntenant: Bank A\n", "bad.yaml")
    fact = "The Aurora vault at Bank A opens at seven fifteen every morning."
    async with ClientSession(base_url=w.url) as http:
        status, body, _ = await call(http, "POST", "/api/knowledge/faq/documents", "a_ingest", w,
                                     data="# Vault hours\n\n" + fact + "\n",
                                     headers={"Content-Type": "text/markdown"}, params={"id": "vault"})
        assert status == 201 and body["entries"] == 1 and body["changed"], body
        status, body, _ = await call(http, "POST", "/api/knowledge/faq/documents", "a_ingest", w,
                                     data="# Vault hours\n\n" + fact + "\n",
                                     headers={"Content-Type": "text/markdown"}, params={"id": "vault"})
        assert status == 201 and not body["changed"]  # the same document again: nothing to do
        for bad, words in (({"id": "x", "text": ""}, "'text'"), ({"text": "y"}, "'id'"),
                           ({"id": "x", "text": "y", "title": 3}, "'title'")):
            status, body, _ = await call(http, "POST", "/api/knowledge/faq/documents", "a_ingest", w, json=bad)
            assert status == 400 and words in body["error"], body
        status, body, _ = await call(http, "POST", "/api/knowledge/no!/documents", "a_ingest", w,
                                     json={"id": "x", "text": "y"})
        assert status == 400 and "collection name" in body["error"]
        kb = w.fay.knowledge.base()
        hits = kb.search("When does the Aurora vault open?", ["tenant.bank-a.faq"])
        assert hits and "seven fifteen" in hits[0].entry.text and hits[0].entry.source == "vault"
        # bank-b's persona names the same collection: it searches its own (absent), never bank-a's
        sid = await new_session(http, w, "b_all", "kb_b")
        async with http.post(f"/api/sessions/{sid}/messages", json={"text": "When does the Aurora vault open?"},
                             headers=w.auth("b_all")) as r:
            assert r.status == 200 and "seven fifteen" not in await r.text()
        sid = await new_session(http, w, "a_all", "kb_a")
        async with http.post(f"/api/sessions/{sid}/messages", json={"text": "When does the Aurora vault open?"},
                             headers=w.auth("a_all")) as r:
            assert r.status == 200 and "seven fifteen" in await r.text()
