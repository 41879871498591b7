"""The HTTP server: health, personas, sessions, and streamed answers.

Endpoints (JSON unless noted; errors are ``{"error": "..."}`` with the status the error's class carries, see
:mod:`fay_core.errors`, and ``Retry-After`` on refusals that pass, e.g. 503 too many sessions)::

    GET    /health                          {"status": "ok", "sessions": N, "version", "knowledge": "ok"|...}
    GET    /ready                           200, or 503 {"ready": false, "knowledge", "reason"} (warming up,
                                            draining after SIGTERM, or the knowledge base degraded)
    GET    /metrics                         Prometheus text format (:mod:`fay_core.metrics`); open like /api/*
                                            when nothing is configured, else the token or an ``admin`` key
                                            (``server.metrics_public`` opens it)
                                            scope   (see "Keys and tenants" below)
    GET    /api/personas                    chat    [{"id", "name", "language", "greeting", "avatar", "camera",
                                                      "default"}]   camera: {"enabled", "notice",
                                                      "greet_on_arrival"}
    POST   /api/sessions                    chat*   {"persona": "bank_teller_en", "customer_token"?: "...",
                                                     "trainee"?: "..." (role-play: whose sessions a report's
                                                     trend groups; ignored by personas without a scenario)}
                                                    -> {"session_id", "persona", "greeting", "disclosure",
                                                        "recording": {"enabled", "notice"}, "authenticated",
                                                        "session_secret" (only when signed in), "node" (in
                                                        a cluster: the URL of the node that serves it)}
    POST   /api/sessions/{id}/messages      chat*   {"text": "..."} -> text/event-stream of the answer (see below)
    POST   /api/sessions/{id}/consent       chat    {"recording": true|false} -> {"recording": {"enabled",
                                                    "consented", "active"}}; 409 if the persona does not record
    GET    /api/sessions/{id}               chat    the session's history, and "ai": {"served_by": "ai",
                                                    "disclosure", "disclosed": [channels], "labels", "recording"}
    DELETE /api/sessions/{id}               chat    close it
    GET    /api/sessions                    admin   the tenant's open sessions [{"session_id", "persona",
                                                    "created", "idle_s", "authenticated"}]
    GET    /api/sessions/{id}/audit         admin   the session's audit records (open or closed), oldest first
    GET    /api/sessions/{id}/report        chat    a role-play's report (open or closed session): scorecard,
                                                    transcript with times, "final" (overrides applied), "trend"
                                                    (see :mod:`fay_core.roleplay.reports`); 404 if none
    POST   /api/sessions/{id}/report/overrides
                                            admin   a trainer's {"criterion", "score", "comment"} -> the report;
                                                    404 unknown criterion, 409 a report whose scoring failed
    POST   /api/knowledge/{collection}/documents
                                            ingest  {"id", "title"?, "text"}, or a Markdown body
                                                    (Content-Type: text/markdown) with ?id=...; ingested into
                                                    the tenant's collection (replacing that id's document)
                                                    -> 201 {"collection", "document", "entries", "changed"}
    GET    /api/cluster                     admin   {"enabled", "node", "nodes": [{"url", "load", "capacity",
                                                    "draining", "self", "up_s", "heartbeat_age_s"}]}: the live
                                                    nodes (:mod:`fay_core.cluster`); without a cluster, this one
    GET    /api/webrtc/config               chat    ICE servers (see :mod:`fay_core.transport.signalling`)
    POST   /api/webrtc/offer                chat*   an SDP offer -> 201 answer and session
    GET    /console, /api/console/*         admin   the bank team's console (see :mod:`fay_core.console.routes`)
                                            * counts against the key's per-minute rate limit (429)

The answer stream is server-sent events named and shaped by :mod:`fay_core.wire`, exactly as the data channel
carries them (the ``data`` is the whole message): the session's first stream opens with ``disclosure`` (that an AI
answers, :mod:`fay_core.disclosure`) unless the data channel showed it already; then ``delta``, ``tool_called``,
``tool_returned``, ``error``, and finally ``answer`` with ``{"text", "citations", "answered_by", "interrupted",
"error"}``, followed by its deprecated copy ``done`` (until 0.3). Closing the session (``DELETE``, idle, server
shutdown) ends an open stream at once with the turn's ``answer`` (``interrupted``).

Keys and tenants (:mod:`fay_core.access`): with no ``server.token`` and no API keys ``/api/*`` is open; with
``server.token`` set it requires exactly ``Authorization: Bearer <token>`` (the scheme in any case, one space,
nothing after the token); once API keys exist (``fay keys create``) it requires one of them (or the token). No
key, a wrong or revoked one: 401; a key without the endpoint's scope: 403; over its rate limit: 429 with
``Retry-After``. A key acts for its tenant: personas, sessions, audit records and knowledge collections of other
tenants are answered 404 exactly like unknown ones, and are absent from lists.

Request bodies are read by :mod:`fay_core.http_input` (size, charset, UTF-8, JSON depth, integer size, lone
surrogates, an object at the top), whose errors are 400, 413 or 415.

A session created with a ``customer_token`` belongs to that customer: its ``session_secret`` is returned once,
and every later request for the session (messages, history, close) must carry it as ``X-Fay-Session-Secret``
(or the same token as ``X-Fay-Customer-Token``), else 403. The session id alone is not enough: it is written to
the audit log and passes through many hands. Anonymous sessions are reached with their id alone: they hold
nothing personal beyond what their caller typed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
import weakref
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from aiohttp import web

from . import recording
from .app import Fay
from .access import ACCESS, Access, auth_middleware, principal, requires
from .errors import (
    ConfigError,
    FayError,
    InvalidBody,
    InvalidMessage,
    InvalidRequest,
    KnowledgeError,
    MissingScope,
    PersonaError,
    RecordingNotOffered,
    SessionForbidden,
    UnknownSession,
)
from .events import AgentTurnFinished, Event
from .http_input import check_charset, check_persona_id, plausible_file_path, read_body, read_json_object
from .keys import KeyStore
from .knowledge.store import check_name
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .redaction import log_tag
from .roleplay import reports
from .tenancy import DEFAULT_TENANT, tenant_collection
from .session import Session
from .vision import camera_offer
from .wire import SSE_DEPRECATED, deprecated_copy, message

log = logging.getLogger(__name__)

FAY: web.AppKey[Fay] = web.AppKey("fay", Fay)
SECRET_HEADER = "X-Fay-Session-Secret"
CUSTOMER_TOKEN_HEADER = "X-Fay-Customer-Token"
WEB_DIR = Path(__file__).resolve().parent.parent / "web"
#: what a trainee id given at session creation may look like
TRAINEE = re.compile(r"[A-Za-z0-9._@-]{1,64}")


def _version() -> str:
    try:
        return metadata.version("fay")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0+unknown"


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def fay_error_response(exc: FayError) -> web.Response:
    """The answer to ``exc``: the status its class carries, its public message, ``Retry-After`` if it has one.
    A 5xx is logged: a refusal that passes (it has ``Retry-After``: full, busy, draining) as a warning, the rest as
    errors."""
    if exc.status >= 500:
        log.log(logging.WARNING if exc.retry_after_s is not None else logging.ERROR, "%s: %s", type(exc).__name__, exc)
    headers = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s is not None else None
    return error_response(exc.status, exc.public, headers)


def _internal_error(request: web.Request) -> web.Response:
    """Log the exception being handled under a fresh incident id; the client gets only that id."""
    incident = secrets.token_hex(4)
    log.exception("unhandled error on %s %s (incident %s)", request.method, request.path[:200], incident)
    return error_response(500, f"internal error (logged as {incident})")


def _is_static(request: web.Request) -> bool:
    return isinstance(request.match_info.route.resource, web.StaticResource)


def _static_file_exists(request: web.Request) -> bool:
    """Whether a static route's request names a regular file inside its folder. Others get one JSON 404 from us
    (aiohttp would answer a bare 404, or fail on a name the file system refuses)."""
    name = request.match_info.get("filename", "")
    resource = request.match_info.route.resource
    if resource is None or not plausible_file_path(name):
        return False
    folder = Path(resource.get_info()["directory"]).resolve()
    try:
        path = (folder / name).resolve()
        return path.is_relative_to(folder) and path.is_file()
    except (OSError, ValueError):
        return False


@web.middleware
async def errors_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Map Fay's errors to clear HTTP errors; never let one request take the server down."""
    try:
        if _is_static(request) and not _static_file_exists(request):
            return error_response(404, "Not Found")
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        if exc.status == 413:
            limit = request.app[FAY].settings.server.max_body_bytes
            return error_response(413, f"request body too large (limit {limit} bytes)")
        return error_response(exc.status, exc.reason)
    except FayError as exc:
        return fay_error_response(exc)
    except OSError:
        if _is_static(request):  # e.g. a name longer than the file system allows: there is no such file
            return error_response(404, "Not Found")
        return _internal_error(request)
    except Exception:
        return _internal_error(request)


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body, or the 4xx :class:`~fay_core.errors.InvalidRequest` saying what is wrong."""
    server = request.app[FAY].settings.server
    return await read_json_object(request, limit=server.max_body_bytes, max_depth=server.max_json_depth)


# --- who may reach a session ------------------------------------------------------------------------------------


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True, slots=True)
class Owner:
    """The proofs that a request comes from a signed-in session's customer: digests of its secret and token."""

    secret: bytes
    token: bytes

    def admits(self, request: web.Request) -> bool:
        """Whether ``request`` carries the session secret, or the customer token the session was signed in with."""
        given = [(request.headers.get(SECRET_HEADER), self.secret),
                 (request.headers.get(CUSTOMER_TOKEN_HEADER), self.token)]
        return any(hmac.compare_digest(_digest(value), digest) for value, digest in given if value is not None)


OWNERS: web.AppKey[weakref.WeakKeyDictionary[Session, Owner]] = web.AppKey("owners", weakref.WeakKeyDictionary)


def owned_session(request: web.Request) -> Session:
    """The session of the URL, if the request may reach it: a session of the caller's tenant (another tenant's is
    :class:`~fay_core.errors.UnknownSession`), reached by anyone with the id for an anonymous session, only by its
    owner (:class:`Owner`) for a signed-in one (:class:`~fay_core.errors.SessionForbidden` otherwise)."""
    session = request.app[FAY].get(request.match_info["session_id"], principal(request).tenant)
    owner = request.app[OWNERS].get(session)
    if owner is None and session.customer_id is None:
        return session
    if owner is None or not owner.admits(request):  # signed in some other way: the id alone is never enough
        raise SessionForbidden(f"this session is signed in: send its secret as '{SECRET_HEADER}' (returned when "
                               f"it was created) or the customer token as '{CUSTOMER_TOKEN_HEADER}'")
    return session


async def health(request: web.Request) -> web.Response:
    """Liveness: always 200 while the process serves; ``knowledge`` says how the knowledge base is."""
    fay = request.app[FAY]
    return web.json_response({"status": "ok", "sessions": len(fay.sessions), "version": _version(),
                              "knowledge": fay.knowledge.status().state})


async def ready(request: web.Request) -> web.Response:
    """Readiness: 200, or 503 with the reason while the warm-up runs or the knowledge base is degraded (see
    :meth:`fay_core.knowledge.Knowledge.status`). A knowledge base nobody has opened yet is opened (and so
    checked) here first, with the default persona's collections: readiness is never reported for a store nobody
    looked at."""
    fay = request.app[FAY]
    if fay.draining:
        return web.json_response({"ready": False, "knowledge": fay.knowledge.status().state,
                                  "reason": "draining: the server is stopping and starts no new sessions"},
                                 status=503)
    if fay.warming:
        return web.json_response({"ready": False, "knowledge": fay.knowledge.status().state,
                                  "reason": "warming up: loading the knowledge index and the speech models"},
                                 status=503, headers={"Retry-After": "2"})
    if not fay.knowledge.opened:
        with contextlib.suppress(Exception):  # a failure is what status() reports next
            persona = fay.personas.get(fay.settings.default_persona)
            await asyncio.to_thread(fay.knowledge.prepare, persona)
    status = fay.knowledge.status()
    body = {"ready": status.ready, "knowledge": status.state, "reason": status.reason}
    return web.json_response(body, status=200 if status.ready else 503)


async def metrics(request: web.Request) -> web.Response:
    """The runtime's metrics in the Prometheus text format. Not under ``/api/``: a scraper reaches it with the
    same credentials as an admin (``Authorization: Bearer <server.token or an admin key>``), or with none when
    the server is open or ``server.metrics_public`` is set."""
    fay = request.app[FAY]
    if not fay.settings.server.metrics_public:
        who = request.app[ACCESS].authenticate(request.headers.get("Authorization"))
        if "admin" not in who.scopes:
            raise MissingScope("GET /metrics needs the 'admin' scope: scrape with server.token or an admin key "
                               "(fay keys create --scope admin), or set server.metrics_public")
    body = fay.metrics.render()
    return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})


@requires("chat")
async def list_personas(request: web.Request) -> web.Response:
    """The caller's tenant's personas; broken files (whose tenant cannot be known) only to the default tenant."""
    fay = request.app[FAY]
    tenant = principal(request).tenant
    try:
        default: str | None = fay.persona_for(None, tenant).id
    except PersonaError:
        default = None
    out: list[dict[str, Any]] = []
    for pid in fay.personas.ids():
        try:
            p = fay.personas.get(pid)
        except PersonaError as exc:
            if tenant == DEFAULT_TENANT:
                out.append({"id": pid, "error": exc.public})
            continue
        if p.tenant != tenant:
            continue
        out.append({"id": pid, "name": p.name, "language": p.language, "greeting": p.greeting,
                    "avatar": p.avatar.model_dump(), "camera": camera_offer(p), "default": pid == default})
    return web.json_response(out)


@requires("chat", limit="sessions")
async def create_session(request: web.Request) -> web.Response:
    fay = request.app[FAY]
    body = await read_json(request) if request.can_read_body else {}
    persona = body.get("persona")
    if persona is not None and not isinstance(persona, str):
        raise InvalidBody("'persona' must be a persona id string")
    if persona is not None:
        check_persona_id(persona)
    token = body.get("customer_token")
    if token is not None and not isinstance(token, str):
        raise InvalidBody("'customer_token' must be a string")
    customer_id = fay.plugins.pm.hook.authenticate_customer(token=token) if token else None
    if token and not customer_id:
        return error_response(401, "customer_token is not valid (expired or unknown): sign the customer in again")
    trainee = body.get("trainee")
    if trainee is not None and (not isinstance(trainee, str) or not TRAINEE.fullmatch(trainee)):
        raise InvalidBody("'trainee' must be 1-64 letters, digits or . _ @ - (an id of the person in training)")
    session = await fay.create_session(persona, tenant=principal(request).tenant)
    session.customer_id = customer_id
    if session.scenario is not None:
        session.scenario.trainee = trainee
    p = session.persona
    out = {"session_id": session.id, "persona": p.id, "name": p.name, "language": p.language, "greeting": p.greeting,
           "disclosure": session.disclosure.text, "recording": recording.offer(session.recorder),
           "authenticated": customer_id is not None}
    if session.scenario is not None:
        out["scenario"] = scenario_info(session)
    if fay.cluster is not None:
        out["node"] = fay.cluster.url  # the node that serves it (any node routes its requests there)
    if token and customer_id:
        secret = secrets.token_urlsafe(32)
        request.app[OWNERS][session] = Owner(secret=_digest(secret), token=_digest(token))
        out["session_secret"] = secret  # returned this once; the server keeps only its digest
    return web.json_response(out, status=201)


def _sse(msg: dict[str, Any]) -> bytes:
    """One server-sent event: the message's ``type`` names it, the whole message is its data."""
    # a lone surrogate the client sent (and the answer echoes) goes out as its JSON escape, not as an encoding error
    return f"event: {msg['type']}\ndata: {json.dumps(msg, ensure_ascii=False)}\n\n".encode(errors="backslashreplace")


@requires("chat", limit="messages")
async def post_message(request: web.Request) -> web.StreamResponse:
    session = owned_session(request)
    body = await read_json(request)
    text = body.get("text")
    if not isinstance(text, str):
        raise InvalidMessage("'text' (a string) is required")
    stream = aiter(session.ask(text))
    first = await anext(stream)  # raises SessionError (its status) before the stream starts
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await resp.prepare(request)
    event: Event = first
    try:
        while True:
            msg = message(event)
            if msg is not None:
                old = deprecated_copy(msg, SSE_DEPRECATED)
                await resp.write(_sse(msg) + (_sse(old) if old is not None else b""))
            if isinstance(event, AgentTurnFinished):
                break
            event = await anext(stream)
        await resp.write_eof()
    except ConnectionResetError:  # the client went away: the turn goes on and is recorded, nobody is told
        log.debug("session %s: the client closed its answer stream", log_tag(session.id))
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    return resp


def ai_service(session: Session) -> dict[str, Any]:
    """That the session is served by an AI, and how the customer was told (``GET /api/sessions/{id}``'s ``ai``)."""
    return {
        "served_by": "ai",
        "disclosure": session.disclosure.text,
        "disclosed": list(session.disclosure.delivered),
        "labels": {"explicit": "AI-generated (web client and avatar video)",
                   "implicit": "AIGC metadata (TC260 fields) in every audio file written"},
        "recording": recording.state(session.recorder),
    }


@requires("chat")
async def post_consent(request: web.Request) -> web.Response:
    """The customer's answer to the recording notice: ``{"recording": true}`` accepts, ``false`` declines or
    withdraws (recording stops at once)."""
    session = owned_session(request)
    body = await read_json(request)
    accepted = body.get("recording")
    if not isinstance(accepted, bool):
        raise InvalidBody("'recording' (true or false) is required")
    if session.recorder is None:
        raise RecordingNotOffered(f"persona {session.persona.id!r} does not record (recording.enabled is off): "
                                  "there is nothing to consent to")
    session.recorder.consent(accepted, via="http")
    return web.json_response({"recording": recording.state(session.recorder)})


@requires("chat")
async def get_session(request: web.Request) -> web.Response:
    session = owned_session(request)
    return web.json_response(
        {
            "session_id": session.id,
            "persona": session.persona.id,
            "ai": ai_service(session),
            "history": [
                {"role": m.role, "content": m.content, "interrupted": m.interrupted, "turn": m.turn_id}
                for m in session.history.messages
            ],
        }
    )


@requires("chat")
async def delete_session(request: web.Request) -> web.Response:
    session = owned_session(request)
    await request.app[FAY].close_session(session.id, "closed by client")
    return web.json_response({"closed": session.id})


# --- admin and ingest ---------------------------------------------------------------------------------------------


@requires("admin")
async def list_sessions(request: web.Request) -> web.Response:
    """The open sessions of the caller's tenant."""
    tenant = principal(request).tenant
    now = time.monotonic()
    return web.json_response([
        {"session_id": s.id, "persona": s.persona.id, "created": s.created, "idle_s": round(now - s.last_active, 1),
         "authenticated": s.customer_id is not None}
        for s in request.app[FAY].sessions.values() if s.tenant == tenant
    ])


@requires("admin")
async def session_audit(request: web.Request) -> web.Response:
    """The audit records of one of the tenant's sessions, open or closed (records say their tenant; those written
    before tenants existed belong to ``default``)."""
    fay = request.app[FAY]
    session_id = request.match_info["session_id"]
    tenant = principal(request).tenant
    records = await asyncio.to_thread(fay.audit.read, session_id)
    live = fay.sessions.get(session_id)
    owner = live.tenant if live is not None else next(
        (r["tenant"] for r in records if "tenant" in r), DEFAULT_TENANT if records else None)
    if owner != tenant:  # none, or another tenant's: the same answer
        raise UnknownSession(f"unknown session {session_id!r}: create one with POST /api/sessions")
    return web.json_response({"session_id": session_id, "records": records})


def scenario_info(session: Session) -> dict[str, Any]:
    """A role-play session's plan as clients show it (``POST /api/sessions``' ``scenario``)."""
    sc = session.persona.scenario
    return {"kind": sc.kind, "role": sc.avatar_role, "difficulty": sc.difficulty, "steps": len(sc.steps),
            "time_limit_s": sc.time_limit_s, "report": f"/api/sessions/{session.id}/report"}


@requires("chat")
async def get_report(request: web.Request) -> web.Response:
    """A role-play session's report. A live session's is brought up to date first (written "on request"); a closed
    session's is read from the store (its tenant's, by id, as anonymous sessions are reached)."""
    fay = request.app[FAY]
    session_id = request.match_info["session_id"]
    tenant = principal(request).tenant
    live = fay.sessions.get(session_id)
    if live is not None and live.tenant == tenant:
        owned_session(request)
        if live.report is not None:
            ended = live.scenario.ended if live.scenario is not None else None
            await live.report.write(ended.reason if ended is not None else "in progress", again=False)
    else:
        writer = fay.assembly.writers.get(session_id)
        if writer is not None and writer.tenant() == tenant:  # closing: its last write comes first
            await writer.settled()
    return web.json_response(await asyncio.to_thread(reports.view, fay.assembly.reports(), tenant, session_id))


@requires("admin")
async def post_override(request: web.Request) -> web.Response:
    """A trainer's score of one criterion, with a comment; the AI's score stays beside it."""
    fay = request.app[FAY]
    body = await read_json(request)
    criterion, score, comment = body.get("criterion"), body.get("score"), body.get("comment")
    if not isinstance(criterion, str) or not criterion:
        raise InvalidBody("'criterion' (the rubric criterion's name, a string) is required")
    if isinstance(score, bool) or not isinstance(score, int | float):
        raise InvalidBody("'score' (a number from 0 to the criterion's max_score) is required")
    if not isinstance(comment, str) or not comment.strip() or len(comment) > reports.MAX_COMMENT:
        raise InvalidBody(f"'comment' (1-{reports.MAX_COMMENT} characters: why the score changes) is required")
    tenant = principal(request).tenant
    store = fay.assembly.reports()
    session_id = request.match_info["session_id"]
    await asyncio.to_thread(store.override, tenant, session_id, criterion, float(score), comment.strip())
    return web.json_response(await asyncio.to_thread(reports.view, store, tenant, session_id))


#: the longest document id accepted by the ingest endpoint
MAX_DOCUMENT_ID = 200


@requires("ingest")
async def ingest_document(request: web.Request) -> web.Response:
    """Ingest one document into the tenant's collection, replacing what an earlier document of its id held."""
    fay = request.app[FAY]
    name = request.match_info["collection"]
    try:
        collection = tenant_collection(principal(request).tenant, check_name(name))
    except KnowledgeError as exc:
        raise InvalidRequest(str(exc)) from None
    markdown = request.content_type in ("text/markdown", "text/x-markdown")
    title: Any = None
    if markdown:
        check_charset(request)
        raw = await read_body(request, fay.settings.server.max_body_bytes)
        try:
            text: Any = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidBody("body is not UTF-8 Markdown") from None
        doc_id: Any = request.query.get("id")
    else:
        body = await read_json(request)
        doc_id, title, text = body.get("id"), body.get("title"), body.get("text")
    if not isinstance(doc_id, str) or not 0 < len(doc_id) <= MAX_DOCUMENT_ID or not doc_id.isprintable():
        raise InvalidBody(f"'id' (a string of 1-{MAX_DOCUMENT_ID} printable characters) names the document: in "
                          "the JSON body, or as ?id= with a Markdown body")
    if title is not None and not isinstance(title, str):
        raise InvalidBody("'title' must be a string")
    if not isinstance(text, str) or not text.strip():
        raise InvalidBody("'text' (a non-empty string) is required: the document's content")
    report = await asyncio.to_thread(_ingest, fay, collection, doc_id, title, text, markdown=markdown)
    return web.json_response({"collection": name, "document": doc_id, "entries": report.entries,
                              "changed": report.changed}, status=201)


def _ingest(fay: Fay, collection: str, doc_id: str, title: str | None, text: str, *, markdown: bool) -> Any:
    """Through the knowledge base's own loaders: Markdown sections, or a text in chunks (in a worker thread)."""
    import tempfile

    kb = fay.knowledge.base()
    with tempfile.TemporaryDirectory(prefix="fay-ingest-") as tmp:
        path = Path(tmp) / ("document.md" if markdown else "document.txt")
        path.write_text(text, encoding="utf-8")
        entries = kb.load(path, doc_id)
    # the loaders name what has no heading after the file: name it after the document
    entries = [e if e.section else dataclasses.replace(e, title=title or doc_id) for e in entries]
    return kb.ingest_entries(collection, f"api:{doc_id}", entries)


@requires("admin")
async def cluster_nodes(request: web.Request) -> web.Response:
    """The live nodes of the cluster with their load (:mod:`fay_core.cluster`); without a cluster, this node alone
    (``"enabled": false``). Node-level figures only: no session, persona or tenant is named."""
    fay = request.app[FAY]
    if fay.cluster is None:
        server = fay.settings.server
        nodes: list[dict[str, Any]] = [{"url": None, "load": len(fay.sessions), "capacity": server.max_sessions,
                                        "draining": fay.draining, "self": True}]
        return web.json_response({"enabled": False, "nodes": nodes})
    now = time.time()
    nodes = [{"url": n.url, "load": n.load, "capacity": n.capacity, "draining": n.draining,
              "self": n.url == fay.cluster.url, "up_s": round(now - n.started, 1),
              "heartbeat_age_s": round(max(0.0, now - n.beat), 2)} for n in await fay.cluster.nodes()]
    return web.json_response({"enabled": True, "node": fay.cluster.url, "nodes": nodes})


async def index(request: web.Request) -> web.StreamResponse:
    page = WEB_DIR / "index.html"
    if page.is_file():
        return web.FileResponse(page)
    return web.Response(text="Fay is running. See /health and /api/personas.", content_type="text/plain")


def create_app(fay: Fay) -> web.Application:
    """The aiohttp application serving ``fay``; its start and stop run ``fay.start()``/``fay.stop()``."""
    middlewares: list[Any] = [errors_middleware, auth_middleware]
    cluster = None
    if fay.settings.cluster.redis_url is not None:  # imports redis: only in a cluster
        from .cluster import Cluster, setup_cluster

        if fay.settings.cluster.node_url is None:
            raise ConfigError("a cluster node needs cluster.node_url (FAY_CLUSTER__NODE_URL): the URL other nodes "
                              "reach it by, e.g. http://10.0.0.5:8000")
        cluster = fay.cluster = Cluster(fay, fay.settings.cluster)
        middlewares.insert(1, cluster.middleware())  # before authentication: the owner checks the key
    app = web.Application(middlewares=middlewares, client_max_size=fay.settings.server.max_body_bytes)
    app[FAY] = fay
    app[OWNERS] = weakref.WeakKeyDictionary()
    keys = KeyStore.in_data_dir(fay.settings.data_dir)
    keys.keys()  # a malformed key store stops the server here, with its ConfigError
    app[ACCESS] = Access(fay.settings.server.token, keys, fay.settings.keys)

    async def lifecycle(_app: web.Application) -> Any:
        await fay.start()
        yield
        await fay.stop()

    async def end_sessions(_app: web.Application) -> None:
        # on shutdown, before aiohttp waits for open requests: each open answer stream gets its end and closes
        await asyncio.gather(*(fay.close_session(sid, "server stopping") for sid in list(fay.sessions)))

    if cluster is not None:
        setup_cluster(app, cluster)  # joins before the runtime starts, leaves after its sessions closed
    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(end_sessions)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/personas", list_personas)
    app.router.add_post("/api/sessions", create_session)
    app.router.add_post("/api/sessions/{session_id}/messages", post_message)
    app.router.add_post("/api/sessions/{session_id}/consent", post_consent)
    app.router.add_get("/api/sessions/{session_id}", get_session)
    app.router.add_delete("/api/sessions/{session_id}", delete_session)
    app.router.add_get("/api/sessions", list_sessions)
    app.router.add_get("/api/sessions/{session_id}/audit", session_audit)
    app.router.add_get("/api/sessions/{session_id}/report", get_report)
    app.router.add_post("/api/sessions/{session_id}/report/overrides", post_override)
    app.router.add_post("/api/knowledge/{collection}/documents", ingest_document)
    app.router.add_get("/api/cluster", cluster_nodes)
    app.router.add_get("/", index)
    from .console import setup_console
    from .transport import setup_webrtc  # imports aiortc: only when serving

    setup_webrtc(app, fay)
    setup_console(app, fay)  # /console and /api/console/* (see fay_core.console.routes)
    if WEB_DIR.is_dir():
        app.router.add_static("/web/", WEB_DIR, show_index=False, follow_symlinks=False)
    return app
