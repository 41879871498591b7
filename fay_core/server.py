"""The HTTP server: health, personas, sessions, and streamed answers.

Endpoints (JSON unless noted; errors are ``{"error": "..."}`` with a 4xx/5xx status)::

    GET    /health                          {"status": "ok", "sessions": N, "version": ...}
    GET    /api/personas                    [{"id", "name", "language", "greeting", "avatar"}]
    POST   /api/sessions                    {"persona": "bank_teller_en", "customer_token"?: "..."}
                                            -> {"session_id", "persona", "greeting", "authenticated"}
    POST   /api/sessions/{id}/messages      {"text": "..."} -> text/event-stream of the answer (see below)
    GET    /api/sessions/{id}               the session's history
    DELETE /api/sessions/{id}               close it

The answer stream is server-sent events: ``event: delta`` (``{"text"}``), ``tool_called``, ``tool_returned``,
``error`` (``{"source", "message"}``), and finally ``event: done`` with ``{"text", "citations", "answered_by",
"interrupted"}``. If ``server.token`` is set, ``/api/*`` requires ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hmac
import json
import logging
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

from aiohttp import web

from .app import Fay
from .errors import FayError, PersonaError, SessionError
from .events import AgentTextDelta, AgentToolCalled, AgentToolReturned, AgentTurnFinished, ErrorRaised

log = logging.getLogger(__name__)

FAY: web.AppKey[Fay] = web.AppKey("fay", Fay)
WEB_DIR = Path(__file__).resolve().parent.parent / "web"


def _version() -> str:
    try:
        return metadata.version("fay")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0+unknown"


def error_response(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Map Fay's errors to clear HTTP errors; never let one request take the server down."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400 and exc.content_type != "application/json":
            return error_response(exc.status, exc.reason if exc.status != 413 else
                                  f"request body too large (limit {request.app[FAY].settings.server.max_body_bytes} bytes)")
        raise
    except PersonaError as exc:
        return error_response(404 if "unknown persona" in str(exc) else 422, str(exc))
    except SessionError as exc:
        msg = str(exc)
        status = 404 if msg.startswith("unknown session") else 503 if msg.startswith("too many") else 400
        return error_response(status, msg)
    except FayError as exc:
        return error_response(500, str(exc))
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
    fay = request.app[FAY]
    return web.json_response({"status": "ok", "sessions": len(fay.sessions), "version": _version()})


async def list_personas(request: web.Request) -> web.Response:
    fay = request.app[FAY]
    out: list[dict[str, Any]] = []
    for pid in fay.personas.ids():
        try:
            p = fay.personas.get(pid)
        except PersonaError as exc:
            out.append({"id": pid, "error": str(exc)})
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


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


async def post_message(request: web.Request) -> web.StreamResponse:
    fay = request.app[FAY]
    session = fay.get(request.match_info["session_id"])
    body = await read_json(request)
    text = body.get("text")
    if not isinstance(text, str):
        return error_response(400, "'text' (a string) is required")
    stream = aiter(session.ask(text))
    first = await anext(stream)  # raises SessionError (mapped to 400) before the stream starts
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await resp.prepare(request)
    event: Any = first
    while True:
        if isinstance(event, AgentTextDelta):
            await resp.write(_sse("delta", {"text": event.text}))
        elif isinstance(event, AgentToolCalled):
            await resp.write(_sse("tool_called", {"name": event.name, "arguments": event.arguments}))
        elif isinstance(event, AgentToolReturned):
            await resp.write(_sse("tool_returned", {"name": event.name, "result": event.result, "error": event.error}))
        elif isinstance(event, ErrorRaised):
            await resp.write(_sse("error", {"source": event.source, "message": event.message}))
        elif isinstance(event, AgentTurnFinished):
            await resp.write(_sse("done", turn_json(event)))
            break
        event = await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]
    await resp.write_eof()
    return resp


def turn_json(event: AgentTurnFinished) -> dict[str, Any]:
    return {
        "turn": event.turn_id,
        "text": event.text,
        "citations": [asdict(c) for c in event.citations],
        "answered_by": event.answered_by,
        "interrupted": event.interrupted,
        "error": event.error,
    }


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
    app.router.add_get("/api/personas", list_personas)
    app.router.add_post("/api/sessions", create_session)
    app.router.add_post("/api/sessions/{session_id}/messages", post_message)
    app.router.add_get("/api/sessions/{session_id}", get_session)
    app.router.add_delete("/api/sessions/{session_id}", delete_session)
    app.router.add_get("/", index)
    from .transport import setup_webrtc  # imports aiortc: only when serving

    setup_webrtc(app)
    if WEB_DIR.is_dir():
        app.router.add_static("/web/", WEB_DIR, show_index=False, follow_symlinks=False)
    return app
