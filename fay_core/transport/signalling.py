"""HTTP signalling for the WebRTC transport (mounted by :func:`fay_core.server.create_app`).

See :mod:`fay_core.transport.protocol` for the bodies. Errors are ``{"error": "..."}`` with a clear status:
400 malformed body or SDP, 404 unknown persona, 413 SDP too large, 503 too many sessions (with ``Retry-After``).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ValidationError

from .ice import client_ice_config
from .protocol import OfferRequest
from .transport import OfferError, WebRTCTransport

TRANSPORT: web.AppKey[WebRTCTransport] = web.AppKey("webrtc", WebRTCTransport)


def _error(status: int, message: str) -> web.Response:
    headers = {"Retry-After": "10"} if status == 503 else None
    return web.json_response({"error": message}, status=status, headers=headers)


async def get_config(request: web.Request) -> web.Response:
    transport = request.app[TRANSPORT]
    return web.json_response(
        {**client_ice_config(transport.settings), "maxMessageBytes": transport.settings.max_message_bytes}
    )


async def post_offer(request: web.Request) -> web.Response:
    transport = request.app[TRANSPORT]
    try:
        body: Any = await request.json()
    except ValueError as exc:
        return _error(400, f"body is not JSON: {exc}")
    if isinstance(body, dict) and isinstance(body.get("sdp"), str):
        size = len(body["sdp"].encode())
        if size > transport.settings.max_sdp_bytes:  # before validating a huge string any further
            return _error(413, f"SDP offer of {size} bytes is over the limit of {transport.settings.max_sdp_bytes}")
    try:
        offer = OfferRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        return _error(400, f'bad offer: {where}: {first["msg"]} (send {{"sdp": "...", "type": "offer", '
                           f'"persona": "<id>"}})')
    try:
        peer, sdp = await transport.answer(offer)
    except OfferError as exc:
        return _error(exc.status, str(exc))
    return web.json_response({"sdp": sdp, "type": "answer", "session_id": peer.id}, status=201)


def setup_webrtc(app: web.Application) -> WebRTCTransport:
    """Add the signalling routes to ``app`` (whose ``FAY`` key holds the runtime); peers close on shutdown."""
    from ..server import FAY

    transport = WebRTCTransport(app[FAY])
    app[TRANSPORT] = transport

    async def shutdown(_app: web.Application) -> None:
        await transport.close()

    app.on_shutdown.append(shutdown)
    app.router.add_get("/api/webrtc/config", get_config)
    app.router.add_post("/api/webrtc/offer", post_offer)
    return transport
