"""One WebRTC peer: its ``RTCPeerConnection``, its Fay session, data channel, tracks and tasks.

A peer and its session live and die together. Whatever ends first (the client says ``bye`` or closes the page,
ICE fails, the peer never connects, the session is closed over HTTP or for idleness, the server stops) closes
both, and :meth:`Peer.release` frees every track, task and buffer. The conversation record stays in the audit log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from aiortc import RTCDataChannel, RTCPeerConnection, RTCSctpTransport
from aiortc.mediastreams import MediaStreamTrack

from .. import recording
from ..errors import FayError
from ..events import (
    AgentThinking,
    AgentTurnFinished,
    AvatarStartedSpeaking,
    AvatarStoppedSpeaking,
    Event,
    Interrupted,
)
from ..session import Session
from ..settings import WebRTCSettings
from ..wire import CHANNEL_DEPRECATED, deprecated_copy, error_message, message, state_message
from .protocol import (
    CHANNEL_LABEL,
    CLIENT_EVENTS,
    PROTOCOL_VERSION,
    ByeMessage,
    ConsentMessage,
    PingMessage,
    ProtocolError,
    TextMessage,
    parse_client_message,
)
from .tracks import PlayoutTrack, VideoInStats, pump_audio, pump_video

log = logging.getLogger(__name__)

#: connection states in which nothing is sent any more
_GONE = frozenset({"failed", "closed"})
#: avatar frames are skipped while this much data waits in the data channel's send buffer
AVATAR_BACKLOG_BYTES = 256 * 1024


def guard_receive(sctp: RTCSctpTransport, on_error: Callable[[Exception], None]) -> None:
    """Keep a bad data-channel message from closing ``sctp``'s connection: hand its exception to ``on_error``.

    aiortc decodes text messages (strict UTF-8) and opens channels (asserting on a duplicate open) inside its
    receive loop, before any handler runs; an exception there ends the DTLS transport, i.e. the connection. This
    wraps that step (``RTCSctpTransport._data_channel_receive``) of one transport; :func:`check_aiortc` checks at
    start-up that aiortc still has it.
    """
    original = sctp._data_channel_receive

    async def receive(stream_id: int, pp_id: int, data: bytes) -> None:
        try:
            await original(stream_id, pp_id, data)
        except Exception as exc:
            on_error(exc)

    sctp._data_channel_receive = receive  # type: ignore[method-assign]


def guard_flush(sctp: RTCSctpTransport, peer_id: str) -> None:
    """Keep aiortc's send flushes on a dead connection out of the error log.

    Every ``RTCDataChannel.send`` schedules ``RTCSctpTransport._data_channel_flush`` as a task nobody awaits; when
    the connection has died meanwhile (the client left, ICE failed), that task fails with ``ConnectionError`` and
    asyncio logs "Task exception was never retrieved" at ERROR, once per queued message. The peer's death is
    logged where it is noticed (:meth:`Peer.close`); the messages it could not take are dropped, as any send to a
    closed channel is. Other exceptions are not touched.
    """
    original = sctp._data_channel_flush

    async def flush() -> None:
        try:
            await original()
        except ConnectionError as exc:
            log.debug("peer %s: dropped data-channel messages queued before the connection died: %s", peer_id, exc)

    sctp._data_channel_flush = flush  # type: ignore[method-assign]


def check_aiortc() -> None:
    """Fail at start-up, not on the first bad message, if aiortc no longer has the steps :func:`guard_receive` and
    :func:`guard_flush` wrap."""
    for step in ("_data_channel_receive", "_data_channel_flush"):
        if not callable(getattr(RTCSctpTransport, step, None)):
            raise RuntimeError(f"the installed aiortc lacks RTCSctpTransport.{step}: a bad data-channel message "
                               "could close its connection; install the aiortc version fay requires")


class Peer:
    """A connected (or connecting) client. Built by :class:`~fay_core.transport.transport.WebRTCTransport`.

    ``renderer`` is what the web client needs to mount the avatar viewer (or ``None``); ``close(reason)`` asks the
    owner to close the session soon (which releases this peer).
    """

    def __init__(
        self,
        pc: RTCPeerConnection,
        session: Session,
        settings: WebRTCSettings,
        *,
        renderer: dict[str, Any] | None,
        close: Callable[[str], None],
    ) -> None:
        self.pc = pc
        self.session = session
        self.settings = settings
        self.renderer = renderer
        self._close = close
        self.id = session.id
        self.client = ""  #: the remote address the offer came from
        self.channel: RTCDataChannel | None = None
        self.audio_out: PlayoutTrack | None = None
        self.video_out: MediaStreamTrack | None = None
        self.remote_audio: MediaStreamTrack | None = None
        #: the visitor's camera, for personas with ``vision.enabled`` (decoded at ``vision.fps``, never stored)
        self.remote_video: MediaStreamTrack | None = None
        self.video_in = VideoInStats()
        self.vision_error = ""
        self.voice = False
        self.voice_error = ""
        self.state = "listening"
        self.created = time.monotonic()
        self.connected_at: float | None = None
        self.messages_in = 0
        self.bad_messages = 0  #: data-channel messages refused (protocol errors), in all
        self.bad_in_a_row = 0  #: ... since the last good one
        self.avatar_frames = 0
        self.avatar_skipped = 0
        self._closing = False
        self._released = False
        self.released = asyncio.Event()  #: set once :meth:`release` has freed everything
        self._max_bytes = settings.max_message_bytes

    # --- wiring -----------------------------------------------------------------------------------------

    def attach(self) -> None:
        """Subscribe to the session's bus and the peer connection's events (after the answer is made)."""
        bus = self.session.bus
        bus.subscribe(self._forward, *CLIENT_EVENTS, name="webrtc.events", drop_stale=False)
        self.pc.on("connectionstatechange", self._on_state)
        self.pc.on("datachannel", self._on_channel)
        if self.pc.sctp is not None:
            guard_receive(self.pc.sctp, self._on_receive_error)
            guard_flush(self.pc.sctp, self.id)
        if self.remote_audio is not None:
            bus.spawn(pump_audio(self.remote_audio, bus), name="webrtc.audio_in")
        if self.remote_video is not None:
            fps = self.session.persona.vision.fps
            bus.spawn(pump_video(self.remote_video, bus, fps, stats=self.video_in), name="webrtc.video_in")
        bus.spawn(self._connect_deadline(), name="webrtc.connect_deadline")

    async def _connect_deadline(self) -> None:
        await asyncio.sleep(self.settings.connect_timeout_s)
        if self.pc.connectionState != "connected":
            self.close(f"not connected after {self.settings.connect_timeout_s:g}s (ICE failed?)",
                       abnormal=True)

    def _on_state(self) -> None:
        state = self.pc.connectionState
        log.debug("peer %s: connection %s", self.id, state)
        if state == "connected" and self.connected_at is None:
            self.connected_at = time.monotonic()
        elif state in ("failed", "closed"):
            self.close(f"connection {state}", abnormal=state == "failed")

    def _on_channel(self, channel: RTCDataChannel) -> None:
        if channel.label != CHANNEL_LABEL or self.channel is not None:
            channel.close()
            return
        self.channel = channel
        channel.on("message", self._on_message)
        channel.on("close", lambda: self.close("data channel closed"))
        self.send(self._ready())
        self.session.disclosure.deliver("webrtc")  # the ready message carries it: the client shows it first
        stream = self.session.avatar
        data = stream.header() if stream is not None else None
        if data:  # a data renderer's stream header (channel table) goes first, as a binary message
            channel.send(bytes(data))
        if self.voice_error:
            self.send(error_message("voice", self.voice_error))
        if self.vision_error:
            self.send(error_message("vision", self.vision_error))

    def _ready(self) -> dict[str, Any]:
        p = self.session.persona
        renderer = self.renderer
        return {
            "type": "ready",
            "protocol": PROTOCOL_VERSION,
            "session_id": self.id,
            "persona": {"id": p.id, "name": p.name, "language": p.language, "greeting": p.greeting,
                        "avatar": p.avatar.model_dump()},
            "disclosure": self.session.disclosure.text,
            "recording": recording.offer(self.session.recorder),
            "renderer": renderer,
            "voice": self.voice,
            "camera": self.remote_video is not None,
            "max_message_bytes": self._max_bytes,
        }

    # --- client to server -------------------------------------------------------------------------------

    def _on_message(self, raw: str | bytes) -> None:
        """The channel's message handler: whatever goes wrong is answered with an ``error``, never raised.

        An exception escaping here would go up through aiortc's receive loop and close the connection (and the
        session). A refused message counts towards ``webrtc.max_bad_messages`` in a row; a fault of the server's
        does not (the client did nothing wrong) and is logged with its traceback.
        """
        self.messages_in += 1
        try:
            self._handle(raw)
        except ProtocolError as exc:
            self._refused(str(exc))
        except Exception:
            log.exception("peer %s: a data-channel message failed", self.id)
            self.send(error_message("webrtc", "the server could not handle this message (it was not processed): "
                                              "try again"))

    def _handle(self, raw: str | bytes) -> None:
        msg = parse_client_message(raw, self._max_bytes)
        if isinstance(msg, TextMessage):
            try:
                self.session.submit(msg.text, source="text")
            except FayError as exc:
                self.send(error_message("session", exc.public))
                return
        elif isinstance(msg, PingMessage):
            self.send({"type": "pong", "t": msg.t})
        elif isinstance(msg, ByeMessage):
            self.close("client said bye")
        elif isinstance(msg, ConsentMessage):
            self._consent(msg.recording)
        self.bad_in_a_row = 0

    def _consent(self, accepted: bool) -> None:
        rec = self.session.recorder
        if rec is None:
            self.send(error_message("consent", "this persona does not record: there is nothing to consent to"))
            return
        try:
            rec.consent(accepted, via="webrtc")
        except FayError as exc:  # the audit log cannot take the consent: nothing is recorded
            self.send(error_message("consent", exc.public))
            return
        self.send({"type": "consent", "recording": recording.state(self.session.recorder)})

    def _refused(self, why: str) -> None:
        """Answer a refused message; close a client that sends nothing but refused messages.

        A browser running the web client only sends messages it built, so ``max_bad_messages`` refusals in a row
        (no good message between) mean a broken or hostile client: each one costs a parse and a reply on the
        event loop every session shares, and closing it frees its slot. Nothing a person said is lost: one good
        message resets the count, and a text that was refused was never taken.
        """
        self.bad_messages += 1
        self.bad_in_a_row += 1
        limit = self.settings.max_bad_messages
        if self.bad_in_a_row < limit:
            self.send(error_message("webrtc", why))
            return
        self.send(error_message("webrtc", f"{why}; {limit} bad messages in a row: closing the session", fatal=True))
        self.close(f"{limit} bad data-channel messages in a row", abnormal=True)

    def _on_receive_error(self, exc: Exception) -> None:
        """aiortc failed on a message before it reached :meth:`_on_message` (see :func:`guard_receive`)."""
        if isinstance(exc, UnicodeDecodeError):
            self._refused(f"message is not valid UTF-8 text: bad byte at position {exc.start}")
            return
        log.error("peer %s: aiortc failed on a data-channel message: %s: %s", self.id, type(exc).__name__, exc)
        self.send(error_message("webrtc", "the server could not read this message (it was not processed)"))

    # --- server to client -------------------------------------------------------------------------------

    def send(self, message: dict[str, Any]) -> None:
        """Send a JSON message on the data channel if it is open (dropped otherwise)."""
        ch = self.channel
        if ch is None or ch.readyState != "open" or self.pc.connectionState in _GONE:
            return  # (aiortc's send to a peer that lost its connection fails in a task nobody awaits)
        try:
            ch.send(json.dumps(message, ensure_ascii=False))
        except Exception as exc:  # the channel closed under us: the close handler cleans up
            log.debug("peer %s: send failed: %s", self.id, exc)

    def _set_state(self, state: str, ts: float) -> None:
        if state != self.state:
            self.state = state
            self.send(state_message(state, ts))

    def _forward(self, event: Event) -> None:
        msg = message(event)
        if msg is not None:
            self.send(msg)
            old = deprecated_copy(msg, CHANNEL_DEPRECATED)
            if old is not None:
                self.send(old)
        if isinstance(event, AgentThinking):
            self._set_state("thinking", event.ts)
        elif isinstance(event, AvatarStartedSpeaking):
            self._set_state("speaking", event.ts)
        elif isinstance(event, AvatarStoppedSpeaking | Interrupted) or (
            isinstance(event, AgentTurnFinished) and (not self.voice or not event.text)
        ):
            self._set_state("listening", event.ts)

    def send_avatar(self, payload: bytes, pts: float, turn_id: int) -> None:
        """The avatar stream's listener: send a binary frame, or skip it while the channel is backed up."""
        ch = self.channel
        if ch is None or ch.readyState != "open" or self.pc.connectionState in _GONE:
            return  # (aiortc's send to a peer that lost its connection fails in a task nobody awaits)
        if ch.bufferedAmount > AVATAR_BACKLOG_BYTES:
            self.avatar_skipped += 1
            return
        try:
            ch.send(payload)
            self.avatar_frames += 1
        except Exception as exc:
            log.debug("peer %s: avatar send failed: %s", self.id, exc)

    # --- closing ----------------------------------------------------------------------------------------

    def close(self, reason: str, abnormal: bool = False) -> None:
        """Close this peer and its session soon (safe to call from any callback, any number of times)."""
        if self._closing:
            return
        self._closing = True
        log.log(logging.WARNING if abnormal else logging.INFO, "peer %s closing: %s", self.id, reason)
        self._close(reason)

    async def release(self) -> None:
        """Free the peer connection, its tracks and buffers (the session's ``on_close`` callback)."""
        if self._released:
            return
        self._released = True
        self._closing = True
        for track in (self.audio_out, self.video_out):
            if track is not None:
                track.stop()
        if self.channel is not None:
            self.channel.remove_all_listeners()
        self.pc.remove_all_listeners()
        await self.pc.close()
        self.channel = None
        self.audio_out = self.video_out = self.remote_audio = self.remote_video = None
        self.released.set()
