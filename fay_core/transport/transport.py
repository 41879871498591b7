"""The WebRTC transport: turns an SDP offer into a session with a peer connection, and keeps track of peers.

One :class:`WebRTCTransport` per server. :meth:`WebRTCTransport.answer` checks the offer and the limits *before*
creating anything, so a refused offer leaves nothing behind; once the session exists, any failure closes it, and
any failure of aiortc's on the offer is :class:`InvalidOffer` (400), never a 500.

Limits. A peer is *pending* from its offer until its connection is up (at most ``webrtc.connect_timeout_s``).
Pending peers count against ``max_peers`` like connected ones, and also against two smaller budgets: one client
(remote address) may have ``max_pending_per_client`` of them (more: :class:`TooManyOffers`, 429), all clients
together ``max_pending`` (more: :class:`PeerLimit`, 503). So offers that never connect hold at most
``max_pending`` of the ``max_peers`` slots, however fast they come, and one client alone at most a few of those;
a shorter timeout for pending peers alone would not do that, as a client can send new offers as fast as old ones
expire.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription

from ..app import Fay
from ..errors import FayError, InvalidOffer, OfferError, OfferTooLarge, PeerLimit, TooManyOffers
from ..session import Session
from .ice import check_aioice, filter_candidates, networks, patient_consent, restrict_peer, rtc_configuration
from .peer import Peer, check_aiortc
from .protocol import OfferRequest
from .tracks import PlayoutTrack

log = logging.getLogger(__name__)

__all__ = ["OfferError", "WebRTCTransport"]  # OfferError lives in fay_core.errors; importable here as in 0.1


#: the media directions aiortc answers (each audio and video section of an offer needs one)
DIRECTIONS = ("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive")
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def check_sdp_size(sdp: str, limit: int) -> None:
    """Raise :class:`OfferTooLarge` if ``sdp`` is over ``limit`` bytes."""
    size = len(sdp.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise OfferTooLarge(f"SDP offer of {size} bytes is over the limit of {limit}")


def check_sdp(sdp: str) -> None:
    """Raise :class:`InvalidOffer` for what aiortc would fail on late (or answer with a 500): text that is not
    Unicode, no SDP header, no ICE credentials or DTLS fingerprint, no data channel, a media section without a
    direction."""
    try:
        sdp.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidOffer(f"malformed SDP offer: not valid Unicode text (lone surrogate at {exc.start})") from None
    if CONTROL.search(sdp):
        raise InvalidOffer("malformed SDP offer: it has control characters (send the browser's offer as it is)")
    lines = sdp.replace("\r\n", "\n").split("\n")
    if lines[0].strip() != "v=0" or not any(line.startswith("m=") for line in lines):
        raise InvalidOffer("malformed SDP offer: expected an SDP body starting with 'v=0' with m= lines")
    if not any(line.startswith("a=ice-ufrag:") for line in lines):
        raise InvalidOffer("malformed SDP offer: no a=ice-ufrag (ICE credentials) in it")
    if not any(line.startswith("a=fingerprint:") for line in lines):
        raise InvalidOffer("malformed SDP offer: no a=fingerprint (DTLS certificate) in it")
    sections: list[list[str]] = []
    for line in lines:
        if line.startswith("m="):
            sections.append([line])
        elif sections:
            sections[-1].append(line.strip())
    kinds = [section[0][2:].split(" ", 1)[0] for section in sections]
    if "application" not in kinds:
        raise InvalidOffer("SDP offer without a data channel (m=application): create the 'fay' data channel "
                           "before making the offer")
    for kind, section in zip(kinds, sections, strict=True):
        if kind in ("audio", "video") and not any(line in DIRECTIONS for line in section):
            raise InvalidOffer(f"malformed SDP offer: its {kind} section has no direction (a=sendrecv, "
                               "a=sendonly, a=recvonly or a=inactive)")


def unanswerable(exc: Exception) -> InvalidOffer:
    """The client's error for an offer aiortc failed on (the details go to the server log only)."""
    log.info("refused an SDP offer that aiortc cannot answer: %s: %s", type(exc).__name__, exc)
    return InvalidOffer("malformed SDP offer: it cannot be answered (send the browser's offer as it is)")


def refuse_video(pc: RTCPeerConnection, tracks: list[Any], used: Any) -> None:
    """Answer the offer's incoming video other than ``used`` (a persona without ``vision``, a second camera) so
    that the browser does not send it (``sendonly`` where the avatar's video goes out on it, else ``inactive``):
    unread, aiortc would still decode its frames and queue them without bound."""
    for transceiver in pc.getTransceivers():
        track = transceiver.receiver.track
        if transceiver.kind == "video" and track in tracks and track is not used:
            transceiver.direction = "sendonly" if transceiver.sender.track is not None else "inactive"


class WebRTCTransport:
    """Every WebRTC peer of one Fay runtime."""

    def __init__(self, fay: Fay) -> None:
        self.fay = fay
        self.settings = fay.settings.webrtc
        self.peers: dict[str, Peer] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._answering: Counter[str] = Counter()  #: offers being answered, by client address
        check_aioice()
        check_aiortc()

    # --- signalling -------------------------------------------------------------------------------------

    def check_offer(self, offer: OfferRequest, client: str = "") -> None:
        """Refuse an offer that is too large (:class:`OfferTooLarge`) or malformed (:class:`InvalidOffer`), one
        more from a ``client`` (remote address) with too many pending (:class:`TooManyOffers`), and one over the
        pending or the peer limit (:class:`PeerLimit`)."""
        check_sdp_size(offer.sdp, self.settings.max_sdp_bytes)
        check_sdp(offer.sdp)
        settings = self.settings
        if self.pending(client) >= settings.max_pending_per_client:
            raise TooManyOffers(f"too many offers: {settings.max_pending_per_client} from this address are still "
                                "connecting; connect those, or wait for them to time out")
        limit = settings.max_peers
        if self.pending() >= min(settings.max_pending, limit):
            raise PeerLimit(f"too many sessions starting: {settings.max_pending} WebRTC peers are still "
                            "connecting, try again later")
        if len(self.peers) + sum(self._answering.values()) >= limit:
            raise PeerLimit(f"too many sessions: the limit of {limit} WebRTC peers is reached, try again later")

    def pending(self, client: str | None = None) -> int:
        """Offers being answered and peers not yet connected: all of them, or ``client``'s."""
        answering = sum(self._answering.values()) if client is None else self._answering[client]
        return answering + sum(
            1 for p in self.peers.values() if p.connected_at is None and (client is None or p.client == client)
        )

    async def answer(self, offer: OfferRequest, client: str = "", tenant: str | None = None) -> tuple[Peer, str]:
        """Create the session and peer for ``offer`` from ``client`` (its remote address); return the peer and the
        SDP answer. With ``tenant``, only that tenant's personas (others are unknown: 404)."""
        self.check_offer(offer, client)
        persona_id = self.fay.persona_for(offer.persona, tenant).id  # PersonaError (404) before anything is created
        self._answering[client] += 1
        try:
            return await self._answer(offer, persona_id, client, tenant)
        finally:
            self._answering[client] -= 1
            if not self._answering[client]:
                del self._answering[client]

    async def _answer(self, offer: OfferRequest, persona_id: str, client: str, tenant: str | None
                      ) -> tuple[Peer, str]:
        pc = RTCPeerConnection(rtc_configuration(self.settings))
        remote: dict[str, Any] = {}
        videos: list[Any] = []
        pc.on("track", lambda track: remote.setdefault(track.kind, track) if track.kind == "audio" else
              videos.append(track))
        try:
            sdp, dropped = filter_candidates(offer.sdp, networks(self.settings))
            if dropped:
                log.debug("dropped %d remote candidates outside webrtc.remote_networks", dropped)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        except Exception as exc:
            await pc.close()
            raise unanswerable(exc) from None
        try:
            session = await self.fay.create_session(persona_id, tenant=tenant)
        except BaseException:
            await pc.close()
            raise
        peer = Peer(pc, session, self.settings, renderer=self.renderer_info(session), close=self._closer(session.id))
        peer.client = client
        self.peers[peer.id] = peer
        session.on_close(lambda: self.peers.pop(peer.id, None))
        session.on_close(peer.release)  # from here on, closing the session frees the peer
        try:
            peer.remote_audio = remote.get("audio")
            if peer.remote_audio is not None:
                await self._attach_voice(peer)
            if videos and session.persona.vision.enabled:
                self._attach_vision(peer, videos[0])
            self._attach_avatar(peer)
            refuse_video(pc, videos, peer.remote_video)
            try:
                restrict_peer(pc, self.settings)
                patient_consent(pc)
                await pc.setLocalDescription(await pc.createAnswer())
            except Exception as exc:
                raise unanswerable(exc) from None
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

    def _attach_vision(self, peer: Peer, track: Any) -> None:
        """Watch the visitor's camera ``track`` (the persona opted in); without a vision processor, go on."""
        try:
            self.fay.assembly.add_vision(peer.session, on_leave=peer.close)
        except FayError as exc:  # e.g. no vision processor installed: everything else works as without a camera
            log.error("peer %s: no vision: %s", peer.id, exc)
            peer.vision_error = f"camera unavailable: {exc}"
            return
        peer.remote_video = track

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
