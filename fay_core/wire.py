"""Fay's wire vocabulary: the one JSON form of the events a client sees, on every wire.

The server-sent events of ``POST /api/sessions/{id}/messages`` (the SSE ``event:`` is the ``type`` and its
``data`` the whole message), the WebRTC data channel (:mod:`fay_core.transport.protocol`), ``fay chat --json``
and the audit log's citations all come from here, so a name means the same thing everywhere::

    disclosure     AgentDisclosed                        {"turn": 0, "text", "language"}  that an AI serves the
                                                         customer: the first message of a session's first
                                                         answer stream, unless its client showed it already
    transcript     TranscriptPartial / TranscriptFinal   {"turn", "final", "text", "language"}
    user_text      UserTextReceived                      {"turn", "text", "source"}
    delta          AgentTextDelta                        {"turn", "text"}
    tool_called    AgentToolCalled                       {"turn", "name", "arguments", "call_id"}
    tool_returned  AgentToolReturned                     {"turn", "name", "call_id", "result", "error"}
    answer         AgentTurnFinished                     {"turn", "text", "citations", "answered_by",
                                                          "interrupted", "error"}
    word           WordPlayed                            {"turn", "word"}
    presence       UserArrived / UserLeft                {"turn": 0, "present", "pts"}  a visitor stepped up to
                                                         the camera or walked away (personas with vision)
    interrupted    Interrupted                           {"turn", "reason"}
    latency        LatencyMeasured                       {"turn", "stage", "ms", "since"}
    error          ErrorRaised                           {"turn", "source", "message", "fatal"}
    scenario_step  ScenarioStepChanged                   {"turn", "step", "index", "total", "aim", "reason",
                                                          "elapsed_s", "time_limit_s"}  a role-play's step
    scenario_end   ScenarioEnded                         {"turn", "reason", "elapsed_s", "steps", "closing"}
    state          (the data channel's avatar state)     {"state": "listening" | "thinking" | "speaking", "ts"}

A citation is :meth:`Citation.to_json() <fay_core.events.Citation.to_json>`:
``{"index", "source", "title", "section", "page", "chunk_id", "score"}``.

Deprecated names, still sent for one release as a second copy of the message right after the new one:
SSE ``done`` (now ``answer``, :data:`SSE_DEPRECATED`) and the data channel's ``tool`` (now ``tool_called``,
:data:`CHANNEL_DEPRECATED`).
"""

from __future__ import annotations

from typing import Any

from .events import (
    AgentDisclosed,
    AgentTextDelta,
    AgentToolCalled,
    AgentToolReturned,
    AgentTurnFinished,
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
    UserTextReceived,
    WordPlayed,
)

#: new name -> the name server-sent events used before it (sent as well in 0.2, removed in 0.3)
SSE_DEPRECATED: dict[str, str] = {"answer": "done"}
#: new name -> the name the data channel used before it (sent as well in 0.2, removed in 0.3)
CHANNEL_DEPRECATED: dict[str, str] = {"tool_called": "tool"}


def message(event: Event) -> dict[str, Any] | None:
    """The JSON message for a bus event, or ``None`` if clients do not get it."""
    t = event.turn_id
    if isinstance(event, AgentDisclosed):
        return {"type": "disclosure", "turn": t, "text": event.text, "language": event.language}
    if isinstance(event, TranscriptPartial | TranscriptFinal):
        return {"type": "transcript", "turn": t, "final": isinstance(event, TranscriptFinal), "text": event.text,
                "language": event.language}
    if isinstance(event, UserArrived | UserLeft):
        return {"type": "presence", "turn": t, "present": isinstance(event, UserArrived), "pts": event.pts}
    if isinstance(event, UserTextReceived):
        return {"type": "user_text", "turn": t, "text": event.text, "source": event.source}
    if isinstance(event, AgentTextDelta):
        return {"type": "delta", "turn": t, "text": event.text}
    if isinstance(event, AgentToolCalled):
        return {"type": "tool_called", "turn": t, "name": event.name, "arguments": event.arguments,
                "call_id": event.call_id}
    if isinstance(event, AgentToolReturned):
        return {"type": "tool_returned", "turn": t, "name": event.name, "call_id": event.call_id,
                "result": event.result, "error": event.error}
    if isinstance(event, AgentTurnFinished):
        return answer_message(event)
    if isinstance(event, WordPlayed):
        return {"type": "word", "turn": t, "word": event.word}
    if isinstance(event, Interrupted):
        return {"type": "interrupted", "turn": t, "reason": event.reason}
    if isinstance(event, LatencyMeasured):
        return {"type": "latency", "turn": t, "stage": event.stage, "ms": round(event.ms, 1), "since": event.since}
    if isinstance(event, ErrorRaised):
        return error_message(event.source, event.message, event.fatal, turn=t)
    if isinstance(event, ScenarioStepChanged):
        return {"type": "scenario_step", "turn": t, "step": event.step_id, "index": event.index, "total": event.total,
                "aim": event.aim, "reason": event.reason, "elapsed_s": round(event.elapsed_s, 1),
                "time_limit_s": event.time_limit_s}
    if isinstance(event, ScenarioEnded):
        return {"type": "scenario_end", "turn": t, "reason": event.reason, "elapsed_s": round(event.elapsed_s, 1),
                "steps": list(event.steps_visited), "closing": event.closing}
    return None


def answer_message(event: AgentTurnFinished) -> dict[str, Any]:
    return {
        "type": "answer",
        "turn": event.turn_id,
        "text": event.text,
        "citations": [c.to_json() for c in event.citations],
        "answered_by": event.answered_by,
        "interrupted": event.interrupted,
        "error": event.error,
    }


def error_message(source: str, message: str, fatal: bool = False, *, turn: int = 0) -> dict[str, Any]:
    return {"type": "error", "turn": turn, "source": source, "message": message, "fatal": fatal}


def state_message(state: str, ts: float) -> dict[str, Any]:
    return {"type": "state", "state": state, "ts": ts}


def deprecated_copy(msg: dict[str, Any], deprecated: dict[str, str]) -> dict[str, Any] | None:
    """``msg`` under its old name from ``deprecated`` (:data:`SSE_DEPRECATED`, ...), or ``None`` if it has none."""
    old = deprecated.get(msg["type"])
    return None if old is None else {**msg, "type": old}
