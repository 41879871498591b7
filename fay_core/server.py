"""The HTTP server: health, personas, sessions, and streamed answers.

Endpoints (JSON unless noted; errors are ``{"error": "..."}`` with the status the error's class carries, see
:mod:`fay_core.errors`, and ``Retry-After`` on refusals that pass, e.g. 503 too many sessions)::

    GET    /health                          {"status": "ok", "sessions": N, "version", "knowledge": "ok"|...}
    GET    /ready                           200, or 503 {"ready": false, "knowledge": "degraded", "reason"}
    GET    /api/personas                    [{"id", "name", "language", "greeting", "avatar"}]
    POST   /api/sessions                    {"persona": "bank_teller_en", "customer_token"?: "..."}
                                            -> {"session_id", "persona", "greeting", "authenticated"}
    POST   /api/sessions/{id}/messages      {"text": "..."} -> text/event-stream of the answer (see below)
    GET    /api/sessions/{id}               the session's history
    DELETE /api/sessions/{id}               close it

The answer stream is server-sent events named and shaped by :mod:`fay_core.wire`, exactly as the data channel
carries them (the ``data`` is the whole message): ``delta``, ``tool_called``, ``tool_returned``, ``error``, and
finally ``answer`` with ``{"text", "citations", "answered_by", "interrupted", "error"}``, followed by its deprecated
copy ``done`` (until 0.3). If ``server.token`` is set, ``/api/*`` requires ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hmac
import json
import logging
from importlib import metadata
from pathlib import Path
from typing import Any

from aiohttp import web

from .app import Fay
from .errors import FayError, InvalidMessage, PersonaError
from .events import AgentTurnFinished, Event
from .wire import SSE_DEPRECATED, deprecated_copy, message

log = logging.getLogger(__name__)

FAY: web.AppKey[Fay] = web.AppKey("fay", Fay)
WEB_DIR = Path(__file__).resolve().parent.parent / "web"


def _version() -> str:
    try:
        return metadata.version("fay")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0+unknown"


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def fay_error_response(exc: FayError) -> web.Response:
    """The answer to ``exc``: the status its class carries, its public message, ``Retry-After`` if it has one."""
    if exc.status >= 500:
        log.error("%s: %s", type(exc).__name__, exc)
    headers = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s is not None else None
    return error_response(exc.status, exc.public, headers)


@web.middleware
async def errors_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Map Fay's errors to clear HTTP errors; never let one request take the server down."""
    try:
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
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal error (see the server log)")


@web.middleware
async def auth_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    token = request.app[FAY].settings.server.token
    if token is not None and request.path.startswith("/api/"):
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
            return error_response(401, "missing or wrong token: send 'Authorization: Bearer <FAY_SERVER__TOKEN>'")
    return await handler(request)


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body, or a 400 that says what is wrong."""
    try:
        body = await request.json()
    except json.JSONDecodeError as exc:
        raise web.HTTPBadRequest(text=json.dumps({"error": f"body is not JSON: {exc}"}),
                                 content_type="application/json") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text=json.dumps({"error": "body must be a JSON object"}),
                                 content_type="application/json")
    return body


async def health(request: web.Request) -> web.Response:
    """Liveness: always 200 while the process serves; ``knowledge`` says how the knowledge base is."""
    fay = request.app[FAY]
    return web.json_response({"status": "ok", "sessions": len(fay.sessions), "version": _version(),
                              "knowledge": fay.knowledge.status().state})


async def ready(request: web.Request) -> web.Response:
    """Readiness: 200, or 503 with the reason while the knowledge base is degraded (see
    :meth:`fay_core.knowledge.Knowledge.status`; the warm-up opens and checks it)."""
    status = request.app[FAY].knowledge.status()
    body = {"ready": status.ready, "knowledge": status.state, "reason": status.reason}
    return web.json_response(body, status=200 if status.ready else 503)


async def list_personas(request: web.Request) -> web.Response:
    fay = request.app[FAY]
    out: list[dict[str, Any]] = []
    for pid in fay.personas.ids():
        try:
            p = fay.personas.get(pid)
        except PersonaError as exc:
            out.append({"id": pid, "error": exc.public})
            continue
        out.append({"id": pid, "name": p.name, "language": p.language, "greeting": p.greeting,
                    "avatar": p.avatar.model_dump(), "default": pid == fay.settings.default_persona})
    return web.json_response(out)


async def create_session(request: web.Request) -> web.Response:
    fay = request.app[FAY]
    body = await read_json(request) if request.can_read_body else {}
    persona = body.get("persona")
    if persona is not None and not isinstance(persona, str):
        return error_response(400, "'persona' must be a persona id string")
    token = body.get("customer_token")
    if token is not None and not isinstance(token, str):
        return error_response(400, "'customer_token' must be a string")
    customer_id = fay.plugins.pm.hook.authenticate_customer(token=token) if token else None
    if token and not customer_id:
        return error_response(401, "customer_token is not valid (expired or unknown): sign the customer in again")
    session = await fay.create_session(persona)
    session.customer_id = customer_id
    p = session.persona
    return web.json_response(
        {"session_id": session.id, "persona": p.id, "name": p.name, "language": p.language, "greeting": p.greeting,
         "authenticated": customer_id is not None},
        status=201,
    )


def _sse(msg: dict[str, Any]) -> bytes:
    """One server-sent event: the message's ``type`` names it, the whole message is its data."""
    return f"event: {msg['type']}\ndata: {json.dumps(msg, ensure_ascii=False)}\n\n".encode()


async def post_message(request: web.Request) -> web.StreamResponse:
    fay = request.app[FAY]
    session = fay.get(request.match_info["session_id"])
    body = await read_json(request)
    text = body.get("text")
    if not isinstance(text, str):
        raise InvalidMessage("'text' (a string) is required")
    stream = aiter(session.ask(text))
    first = await anext(stream)  # raises SessionError (its status) before the stream starts
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await resp.prepare(request)
    event: Event = first
    while True:
        msg = message(event)
        if msg is not None:
            old = deprecated_copy(msg, SSE_DEPRECATED)
            await resp.write(_sse(msg) + (_sse(old) if old is not None else b""))
        if isinstance(event, AgentTurnFinished):
            break
        event = await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]
    await resp.write_eof()
    return resp


async def get_session(request: web.Request) -> web.Response:
    session = request.app[FAY].get(request.match_info["session_id"])
    return web.json_response(
        {
            "session_id": session.id,
            "persona": session.persona.id,
            "history": [
                {"role": m.role, "content": m.content, "interrupted": m.interrupted, "turn": m.turn_id}
                for m in session.history.messages
            ],
        }
    )


async def delete_session(request: web.Request) -> web.Response:
    fay = request.app[FAY]
    sid = request.match_info["session_id"]
    fay.get(sid)
    await fay.close_session(sid, "closed by client")
    return web.json_response({"closed": sid})


async def index(request: web.Request) -> web.StreamResponse:
    page = WEB_DIR / "index.html"
    if page.is_file():
        return web.FileResponse(page)
    return web.Response(text="Fay is running. See /health and /api/personas.", content_type="text/plain")


def create_app(fay: Fay) -> web.Application:
    """The aiohttp application serving ``fay``; its start and stop run ``fay.start()``/``fay.stop()``."""
    app = web.Application(
        middlewares=[errors_middleware, auth_middleware], client_max_size=fay.settings.server.max_body_bytes
    )
    app[FAY] = fay

    async def lifecycle(_app: web.Application) -> Any:
        await fay.start()
        yield
        await fay.stop()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/api/personas", list_personas)
    app.router.add_post("/api/sessions", create_session)
    app.router.add_post("/api/sessions/{session_id}/messages", post_message)
    app.router.add_get("/api/sessions/{session_id}", get_session)
    app.router.add_delete("/api/sessions/{session_id}", delete_session)
    app.router.add_get("/", index)
    from .transport import setup_webrtc  # imports aiortc: only when serving

    setup_webrtc(app, fay)
    if WEB_DIR.is_dir():
        app.router.add_static("/web/", WEB_DIR, show_index=False, follow_symlinks=False)
    return app
