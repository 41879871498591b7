"""The WebRTC transport: signalling over HTTP, one session per peer, audio both ways, a data channel.

- :mod:`.signalling` — the HTTP routes (``/api/webrtc/config``, ``/api/webrtc/offer``), mounted by ``fay run``;
- :mod:`.transport` — :class:`WebRTCTransport`: offers in, answers out, limits, the peers;
- :mod:`.peer` — :class:`Peer`: one peer connection and its session, and their shared lifecycle;
- :mod:`.tracks` — microphone audio to the bus (16 kHz mono), answer audio from the playout clock;
- :mod:`.protocol` — the data-channel protocol (pydantic models at the edge), documented message by message;
- :mod:`.ice` — ICE servers, host addresses, UDP port range and remote networks from ``settings.webrtc``.

aiortc is imported only when this package is, i.e. when the server mounts the routes.
"""

from __future__ import annotations

from .peer import Peer
from .signalling import TRANSPORT, setup_webrtc
from .transport import OfferError, WebRTCTransport

__all__ = ["TRANSPORT", "OfferError", "Peer", "WebRTCTransport", "setup_webrtc"]
