"""The wire protocol between the web client and the server: signalling bodies and data-channel messages.

Signalling (HTTP, JSON)::

    GET  /api/webrtc/config   -> {"iceServers": [...], "iceTransportPolicy": "all", "maxMessageBytes": N}
    POST /api/webrtc/offer    {"sdp": "<offer>", "type": "offer", "persona": "bank_teller_en"}
                              -> 201 {"sdp": "<answer>", "type": "answer", "session_id": "..."}
         errors: 400 malformed body or SDP, 404 unknown persona, 413 SDP too large, 503 too many sessions

The client creates one data channel, labelled ``fay``, before making its offer. Text messages are JSON objects
with a ``type``; binary messages are avatar frames (server to client only).

Client to server (:data:`ClientMessage`)::

    {"type": "text", "text": "What is the savings rate?"}   start a turn, like speaking
    {"type": "ping", "t": 1234.5}                            answered with {"type": "pong", "t": 1234.5}
    {"type": "bye"}                                          close the session now

Server to client (built by :func:`event_message`)::

    {"type": "ready", "protocol": 1, "session_id", "voice": bool, "max_message_bytes",
     "persona": {"id", "name", "language", "greeting", "avatar": {"renderer", "model", "options"}},
     "renderer": null | {"name", "kind": "data" | "video", "viewer": "/web/avatars/<name>.js", "model", "options"}}
                                                              first message; then, for data renderers, the
                                                              binary stream header, then binary frames
    {"type": "state", "state": "listening" | "thinking" | "speaking", "ts"}  ts: server monotonic clock (s)
    {"type": "transcript", "turn", "final": bool, "text", "language"}
    {"type": "user_text", "turn", "text", "source"}           the question a turn answers (typed or spoken)
    {"type": "delta", "turn", "text"}                         answer text as it streams
    {"type": "answer", "turn", "text", "citations": [{"index", "source", "title", "section", "page"}],
     "answered_by", "interrupted", "error"}
    {"type": "tool", "turn", "name", "arguments"}
    {"type": "word", "turn", "word"}                          a word of the answer was just played
    {"type": "interrupted", "turn", "reason"}
    {"type": "latency", "turn", "stage", "ms", "since"}
    {"type": "error", "source", "message", "fatal"}
    {"type": "pong", "t"}
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ..events import (
    AgentThinking,
    AgentToolCalled,
    AgentTextDelta,
    AgentTurnFinished,
    AvatarStartedSpeaking,
    AvatarStoppedSpeaking,
    ErrorRaised,
    Event,
    Interrupted,
    LatencyMeasured,
    TranscriptFinal,
    TranscriptPartial,
    UserStartedSpeaking,
    UserTextReceived,
    WordPlayed,
)

PROTOCOL_VERSION = 1
CHANNEL_LABEL = "fay"


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OfferRequest(_Msg):
    """The body of ``POST /api/webrtc/offer``."""

    sdp: str = Field(min_length=1)
    type: Literal["offer"] = "offer"
    persona: str | None = None


class TextMessage(_Msg):
    type: Literal["text"]
    text: str = Field(min_length=1)


class PingMessage(_Msg):
    type: Literal["ping"]
    t: float = 0.0


class ByeMessage(_Msg):
    type: Literal["bye"]


ClientMessage = Annotated[TextMessage | PingMessage | ByeMessage, Field(discriminator="type")]
_client = TypeAdapter(ClientMessage)


class ProtocolError(ValueError):
    """A data-channel message the server cannot accept; its text goes back to the client as an error event."""


def parse_client_message(raw: str | bytes, max_bytes: int) -> TextMessage | PingMessage | ByeMessage:
    """Validate one data-channel message from the client, or raise :class:`ProtocolError` saying what is wrong."""
    if isinstance(raw, bytes):
        raise ProtocolError("binary messages are not accepted from the client: send JSON text")
    size = len(raw.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise ProtocolError(f"message of {size} bytes is over the limit of {max_bytes}")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"message is not JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ProtocolError('message must be a JSON object with a "type" ("text", "ping" or "bye")')
    try:
        return _client.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "message"
        raise ProtocolError(f"bad {data['type']!r} message: {where}: {first['msg']}") from None


def error_message(source: str, message: str, fatal: bool = False) -> dict[str, Any]:
    return {"type": "error", "source": source, "message": message, "fatal": fatal}


def state_message(state: str, ts: float) -> dict[str, Any]:
    return {"type": "state", "state": state, "ts": ts}


def turn_message(event: AgentTurnFinished) -> dict[str, Any]:
    return {
        "type": "answer",
        "turn": event.turn_id,
        "text": event.text,
        "citations": [
            {"index": c.index, "source": c.source, "title": c.title, "section": c.section, "page": c.page}
            for c in event.citations
        ],
        "answered_by": event.answered_by,
        "interrupted": event.interrupted,
        "error": event.error,
    }


#: bus events turned into data-channel messages (AvatarFrame goes separately, as binary)
CLIENT_EVENTS: tuple[type[Event], ...] = (
    TranscriptPartial,
    TranscriptFinal,
    UserTextReceived,
    UserStartedSpeaking,
    AgentThinking,
    AgentTextDelta,
    AgentToolCalled,
    AgentTurnFinished,
    AvatarStartedSpeaking,
    AvatarStoppedSpeaking,
    WordPlayed,
    Interrupted,
    LatencyMeasured,
    ErrorRaised,
)


def event_message(event: Event) -> dict[str, Any] | None:
    """The JSON message for a bus event, or ``None`` if the client does not get it."""
    t = event.turn_id
    if isinstance(event, TranscriptPartial | TranscriptFinal):
        return {"type": "transcript", "turn": t, "final": isinstance(event, TranscriptFinal), "text": event.text,
                "language": event.language}
    if isinstance(event, UserTextReceived):
        return {"type": "user_text", "turn": t, "text": event.text, "source": event.source}
    if isinstance(event, AgentTextDelta):
        return {"type": "delta", "turn": t, "text": event.text}
    if isinstance(event, AgentTurnFinished):
        return turn_message(event)
    if isinstance(event, AgentToolCalled):
        return {"type": "tool", "turn": t, "name": event.name, "arguments": event.arguments}
    if isinstance(event, WordPlayed):
        return {"type": "word", "turn": t, "word": event.word}
    if isinstance(event, Interrupted):
        return {"type": "interrupted", "turn": t, "reason": event.reason}
    if isinstance(event, LatencyMeasured):
        return {"type": "latency", "turn": t, "stage": event.stage, "ms": round(event.ms, 1), "since": event.since}
    if isinstance(event, ErrorRaised):
        return error_message(event.source, event.message, event.fatal)
    return None
