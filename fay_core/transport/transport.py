"""The WebRTC transport: turns an SDP offer into a session with a peer connection, and keeps track of peers.

One :class:`WebRTCTransport` per server. :meth:`WebRTCTransport.answer` checks the offer and the limits *before*
creating anything, so a refused offer leaves nothing behind; once the session exists, any failure closes it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription

from ..app import Fay
from ..errors import FayError, InvalidOffer, OfferError, OfferTooLarge, PeerLimit
from ..session import Session
from .ice import check_aioice, filter_candidates, networks, restrict_peer, rtc_configuration
from .peer import Peer
from .protocol import OfferRequest
from .tracks import PlayoutTrack

log = logging.getLogger(__name__)

__all__ = ["OfferError", "WebRTCTransport"]  # OfferError lives in fay_core.errors; importable here as in 0.1


def check_sdp_size(sdp: str, limit: int) -> None:
    """Raise :class:`OfferTooLarge` if ``sdp`` is over ``limit`` bytes."""
    size = len(sdp.encode())
    if size > limit:
        raise OfferTooLarge(f"SDP offer of {size} bytes is over the limit of {limit}")


class WebRTCTransport:
    """Every WebRTC peer of one Fay runtime."""

    def __init__(self, fay: Fay) -> None:
        self.fay = fay
        self.settings = fay.settings.webrtc
        self.peers: dict[str, Peer] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pending = 0
        check_aioice()

    # --- signalling -------------------------------------------------------------------------------------

    def check_offer(self, offer: OfferRequest) -> None:
        """Refuse an offer that is too large (:class:`OfferTooLarge`), is not SDP (:class:`InvalidOffer`), or comes
        when the peer limit is reached (:class:`PeerLimit`)."""
        check_sdp_size(offer.sdp, self.settings.max_sdp_bytes)
        lines = offer.sdp.replace("\r\n", "\n").split("\n")
        if lines[0].strip() != "v=0" or not any(line.startswith("m=") for line in lines):
            raise InvalidOffer("malformed SDP offer: expected an SDP body starting with 'v=0' with m= lines")
        if not any(line.startswith("a=ice-ufrag:") for line in lines):
            raise InvalidOffer("malformed SDP offer: no a=ice-ufrag (ICE credentials) in it")
        if not any(line.startswith("a=fingerprint:") for line in lines):
            raise InvalidOffer("malformed SDP offer: no a=fingerprint (DTLS certificate) in it")
        limit = self.settings.max_peers
        if len(self.peers) + self._pending >= limit:
            raise PeerLimit(f"too many sessions: the limit of {limit} WebRTC peers is reached, try again later")

    async def answer(self, offer: OfferRequest) -> tuple[Peer, str]:
        """Create the session and peer for ``offer``; return the peer and the SDP answer."""
        self.check_offer(offer)
        persona_id = offer.persona or self.fay.settings.default_persona
        self.fay.personas.get(persona_id)  # PersonaError (404) before anything is created
        self._pending += 1
        try:
            return await self._answer(offer, persona_id)
        finally:
            self._pending -= 1

    async def _answer(self, offer: OfferRequest, persona_id: str) -> tuple[Peer, str]:
        pc = RTCPeerConnection(rtc_configuration(self.settings))
        remote: dict[str, Any] = {}
        pc.on("track", lambda track: remote.setdefault(track.kind, track))
        sdp, dropped = filter_candidates(offer.sdp, networks(self.settings))
        if dropped:
            log.debug("dropped %d remote candidates outside webrtc.remote_networks", dropped)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        except Exception as exc:
            await pc.close()
            log.info("refused an SDP offer that aiortc cannot read: %s: %s", type(exc).__name__, exc)
            raise InvalidOffer("malformed SDP offer: it cannot be parsed (send the browser's offer as it is)") from None
        try:
            session = await self.fay.create_session(persona_id)
        except BaseException:
            await pc.close()
            raise
        peer = Peer(pc, session, self.settings, renderer=self.renderer_info(session), close=self._closer(session.id))
        self.peers[peer.id] = peer
        session.on_close(lambda: self.peers.pop(peer.id, None))
        session.on_close(peer.release)  # from here on, closing the session frees the peer
        try:
            peer.remote_audio = remote.get("audio")
            if peer.remote_audio is not None:
                await self._attach_voice(peer)
            self._attach_avatar(peer)
            restrict_peer(pc, self.settings)
            await pc.setLocalDescription(await pc.createAnswer())
            peer.attach()
        except BaseException:
            await self.fay.close_session(session.id, "WebRTC set-up failed")
            raise
        return peer, pc.localDescription.sdp

    def _closer(self, session_id: str) -> Callable[[str], None]:
        def close(reason: str) -> None:
            self.spawn(self.fay.close_session(session_id, reason), name=f"webrtc.close:{session_id}")

        return close

    async def _attach_voice(self, peer: Peer) -> None:
        """Give the session its voice, and tap its playout with the peer's audio track."""
        try:
            voice = await self.fay.assembly.add_voice(peer.session)
        except FayError as exc:  # e.g. no VAD/ASR/TTS engine installed: the conversation goes on in text
            log.error("peer %s: no voice: %s", peer.id, exc)
            peer.voice_error = f"voice unavailable, text only: {exc}"
            return
        playout = voice.playout
        track = PlayoutTrack(sample_rate=playout.sample_rate)
        playout.add_listener(track.push)
        peer.session.on_close(lambda: playout.remove_listener(track.push))
        peer.pc.addTrack(track)
        peer.audio_out = track
        peer.voice = True

    def _attach_avatar(self, peer: Peer) -> None:
        """Tap the avatar stream: binary frames to the data channel, or the video track into the video slot."""
        stream = peer.session.avatar
        if stream is None:
            return
        stream.add_listener(peer.send_avatar)
        peer.session.on_close(lambda: stream.remove_listener(peer.send_avatar))
        track = stream.video_track
        if track is None:
            return
        if not any(t.kind == "video" for t in peer.pc.getTransceivers()):
            log.info("peer %s: the offer has no video section, the avatar video is not sent", peer.id)
            return
        peer.pc.addTrack(track)
        peer.video_out = track

    def renderer_info(self, session: Session) -> dict[str, Any] | None:
        """What the web client needs to mount the session's avatar viewer (``session.avatar``), or ``None``."""
        stream = session.avatar
        if stream is None:
            name = session.persona.avatar.renderer
            if name in ("", "none"):
                return None
            return {"name": name, "kind": "none", "error": f"avatar renderer {name!r} did not start"}
        info = stream.info
        viewer = info.viewer or info.name
        if "/" not in viewer:
            viewer = f"/web/avatars/{viewer}.js"
        avatar = session.persona.avatar
        return {"name": info.name, "kind": info.kind, "viewer": viewer, "model": avatar.model,
                "options": {**info.options, **avatar.options}}

    # --- tasks and shutdown -----------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        """Run a task owned by the transport (cancelled and awaited by :meth:`close`)."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        """Close every peer (and its session) and wait for the transport's own tasks."""
        await asyncio.gather(*(self.fay.close_session(pid, "server stopping") for pid in list(self.peers)))
        tasks = list(self._tasks)
        await asyncio.gather(*tasks, return_exceptions=True)
