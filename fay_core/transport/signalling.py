"""HTTP signalling for the WebRTC transport (mounted by :func:`fay_core.server.create_app`).

See :mod:`fay_core.transport.protocol` for the bodies. Both endpoints need the ``chat`` scope (see
:mod:`fay_core.access`); an offer starts a session, so it counts against the key's ``sessions`` rate limit, and
it may name only a persona of the key's tenant (another tenant's is answered 404, like an unknown one).
Refusals are raised as :mod:`fay_core.errors` classes
that carry their status, and answered by the server's error handler as ``{"error": "..."}``: 400 malformed body
or SDP (:class:`InvalidOffer`), 404 unknown persona, 413 SDP too large (:class:`OfferTooLarge`), 429 too many
offers still connecting from this address (:class:`TooManyOffers`), 503 too many peers, or too many still
connecting (:class:`PeerLimit`); both with ``Retry-After``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ValidationError

from ..access import principal, requires
from ..app import Fay
from ..errors import InvalidOffer
from ..http_input import check_persona_id
from .ice import client_ice_config
from .protocol import OfferRequest
from .transport import WebRTCTransport, check_sdp_size

TRANSPORT: web.AppKey[WebRTCTransport] = web.AppKey("webrtc", WebRTCTransport)


@requires("chat")
async def get_config(request: web.Request) -> web.Response:
    transport = request.app[TRANSPORT]
    return web.json_response(
        {**client_ice_config(transport.settings), "maxMessageBytes": transport.settings.max_message_bytes}
    )


@requires("chat", limit="sessions")
async def post_offer(request: web.Request) -> web.Response:
    transport = request.app[TRANSPORT]
    try:
        body: Any = await request.json()
    except ValueError:
        raise InvalidOffer('body is not JSON: send {"sdp": "...", "type": "offer", "persona": "<id>"}') from None
    if isinstance(body, dict) and isinstance(body.get("sdp"), str):
        check_sdp_size(body["sdp"], transport.settings.max_sdp_bytes)  # before validating a huge string further
    try:
        offer = OfferRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidOffer(f'bad offer: {where}: {first["msg"]} (send {{"sdp": "...", "type": "offer", '
                           f'"persona": "<id>"}})') from None
    if offer.persona:
        check_persona_id(offer.persona)  # before the file system sees it
    peer, sdp = await transport.answer(offer, client=request.remote or "", tenant=principal(request).tenant)
    return web.json_response({"sdp": sdp, "type": "answer", "session_id": peer.id}, status=201)


def setup_webrtc(app: web.Application, fay: Fay) -> WebRTCTransport:
    """Add the signalling routes for ``fay``'s sessions to ``app``; peers close on shutdown."""
    transport = WebRTCTransport(fay)
    app[TRANSPORT] = transport

    async def shutdown(_app: web.Application) -> None:
        await transport.close()

    app.on_shutdown.append(shutdown)
    app.router.add_get("/api/webrtc/config", get_config)
    app.router.add_post("/api/webrtc/offer", post_offer)
    return transport
