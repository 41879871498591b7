"""The wire protocol between the web client and the server: signalling bodies and data-channel messages.

Signalling (HTTP, JSON)::

    GET  /api/webrtc/config   -> {"iceServers": [...], "iceTransportPolicy": "all", "maxMessageBytes": N}
    POST /api/webrtc/offer    {"sdp": "<offer>", "type": "offer", "persona": "bank_teller_en"}
                              -> 201 {"sdp": "<answer>", "type": "answer", "session_id": "..."}
         errors (:mod:`fay_core.errors`): 400 malformed body or SDP (InvalidOffer), 404 unknown persona
         (UnknownPersona), 413 SDP too large (OfferTooLarge), 429 too many offers still connecting from this
         address (TooManyOffers), 503 too many peers or peers still connecting (PeerLimit); both with Retry-After

The client creates one data channel, labelled ``fay``, before making its offer. Text messages are JSON objects
with a ``type``; binary messages are avatar frames (server to client only).

Client to server (:data:`ClientMessage`)::

    {"type": "text", "text": "What is the savings rate?"}   start a turn, like speaking
    {"type": "ping", "t": 1234.5}                            answered with {"type": "pong", "t": 1234.5}
    {"type": "bye"}                                          close the session now
    {"type": "consent", "recording": true | false}           the answer to the recording notice (accept,
                                                             decline or withdraw); answered with a ``consent``

Server to client (the event messages come from :mod:`fay_core.wire`, the same as the server-sent events)::

    {"type": "ready", "protocol": 1, "session_id", "voice": bool, "camera": bool, "max_message_bytes",
     "disclosure": "I'm ..., an AI assistant, not a person. ...",   shown first, before the greeting
     "recording": {"enabled": false} | {"enabled": true, "notice": "..."},   ask the customer if enabled
     "persona": {"id", "name", "language", "greeting", "avatar": {"renderer", "model", "options"}},
     "renderer": null | {"name", "kind": "data" | "video", "viewer": "/web/avatars/<name>.js", "model", "options"}}
                                                              first message; then, for data renderers, the
                                                              binary stream header, then binary frames
    {"type": "state", "state": "listening" | "thinking" | "speaking", "ts"}  ts: server monotonic clock (s)
    {"type": "transcript", "turn", "final": bool, "text", "language"}
    {"type": "user_text", "turn", "text", "source"}           the question a turn answers (typed or spoken;
                                                              empty with source "arrival": a greeting)
    {"type": "presence", "turn": 0, "present": bool, "pts"}   a visitor arrived at the camera / left
    {"type": "delta", "turn", "text"}                         answer text as it streams
    {"type": "tool_called", "turn", "name", "arguments", "call_id"}
    {"type": "tool_returned", "turn", "name", "call_id", "result", "error"}
    {"type": "answer", "turn", "text", "citations": [{"index", "source", "title", "section", "page", "chunk_id",
     "score"}], "answered_by", "interrupted", "error"}
    {"type": "word", "turn", "word"}                          a word of the answer was just played
    {"type": "interrupted", "turn", "reason"}
    {"type": "latency", "turn", "stage", "ms", "since"}
    {"type": "error", "turn", "source", "message", "fatal"}   turn 0: not tied to a turn
    {"type": "scenario_step", "turn", "step", "index", "total", "aim", "reason", "elapsed_s", "time_limit_s"}
    {"type": "scenario_end", "turn", "reason", "elapsed_s", "steps", "closing"}   a role-play scenario's progress
    {"type": "pong", "t"}
    {"type": "consent", "recording": {"enabled", "consented", "active"}}   after the client's consent message

Deprecated: ``{"type": "tool", "turn", "name", "arguments", "call_id"}`` is the old name of ``tool_called``; the
server still sends it, right after each ``tool_called``, in 0.2 (:data:`fay_core.wire.CHANNEL_DEPRECATED`), and
stops in 0.3. Clients should read ``tool_called`` and ignore ``tool``.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ..events import (
    AgentTextDelta,
    AgentThinking,
    AgentToolCalled,
    AgentToolReturned,
    AgentTurnFinished,
    AvatarStartedSpeaking,
    AvatarStoppedSpeaking,
    ErrorRaised,
    Event,
    Interrupted,
    LatencyMeasured,
    ScenarioEnded,
    ScenarioStepChanged,
    TranscriptFinal,
    TranscriptPartial,
    UserArrived,
    UserLeft,
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
    t: float = Field(0.0, allow_inf_nan=False)  # echoed in the pong: JSON has no NaN or Infinity


class ByeMessage(_Msg):
    type: Literal["bye"]


class ConsentMessage(_Msg):
    """The customer's answer to the recording notice."""

    type: Literal["consent"]
    recording: bool = Field(strict=True)


ClientMessage = Annotated[TextMessage | PingMessage | ByeMessage | ConsentMessage, Field(discriminator="type")]
_client = TypeAdapter(ClientMessage)

#: the longest number literal accepted (a client timestamp needs about 20 characters)
MAX_NUMBER_CHARS = 32


class ProtocolError(ValueError):
    """A data-channel message the server cannot accept; its text goes back to the client as an error event.

    The text never quotes the client's message at length (see :func:`shown`), so it is always safe to send back.
    """


def shown(value: object, limit: int = 40) -> str:
    """``value`` as a short, ASCII-only quotation for an error message (no lone surrogates, no megabytes)."""
    text = ascii(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _number(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise ProtocolError(f"message has a number of {len(text)} characters (at most {MAX_NUMBER_CHARS})")
    return float(text)


def _constant(name: str) -> float:
    raise ProtocolError(f"message is not JSON: {name} is not a JSON value")


def parse_client_message(raw: str | bytes, max_bytes: int) -> TextMessage | PingMessage | ByeMessage | ConsentMessage:
    """Validate one data-channel message from the client, or raise :class:`ProtocolError` saying what is wrong.

    Nothing else escapes: deep nesting, huge numbers, ``NaN``, lone surrogates and non-objects are all
    :class:`ProtocolError`. A valid message is a flat object, so nesting fails either way; deep nesting fails
    before it reaches the validator.
    """
    if isinstance(raw, bytes):
        raise ProtocolError("binary messages are not accepted from the client: send JSON text")
    size = len(raw.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise ProtocolError(f"message of {size} bytes is over the limit of {max_bytes}")
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ProtocolError(f"message is not valid Unicode text: lone surrogate at position {exc.start}") from None
    try:
        data = json.loads(raw, parse_int=_number, parse_float=_number, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"message is not JSON: {exc.msg} at position {exc.pos}") from None
    except RecursionError:
        raise ProtocolError("message is nested too deeply: send a flat JSON object") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ProtocolError('message must be a JSON object with a "type" ("text", "ping", "bye" or "consent")')
    try:
        return _client.validate_python(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        kind = shown(data["type"])
        if first["type"] == "union_tag_invalid":
            raise ProtocolError(f'unknown message type {kind}: "type" is "text", "ping", "bye" or "consent"') from None
        where = ".".join(shown(p) if isinstance(p, str) and not p.isidentifier() else str(p) for p in first["loc"])
        raise ProtocolError(f"bad {kind} message: {where or 'message'}: {first['msg'][:120]}") from None


#: bus events turned into data-channel messages (avatar frames go separately, as binary, from the avatar stream)
CLIENT_EVENTS: tuple[type[Event], ...] = (
    UserArrived,
    UserLeft,
    TranscriptPartial,
    TranscriptFinal,
    UserTextReceived,
    UserStartedSpeaking,
    AgentThinking,
    AgentTextDelta,
    AgentToolCalled,
    AgentToolReturned,
    AgentTurnFinished,
    AvatarStartedSpeaking,
    AvatarStoppedSpeaking,
    WordPlayed,
    Interrupted,
    LatencyMeasured,
    ErrorRaised,
    ScenarioStepChanged,
    ScenarioEnded,
)

