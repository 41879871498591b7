"""A turn: one user message and the agent's answer, as answerers see it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ..bus import Bus
from ..events import AgentTextDelta, AgentToolCalled, AgentToolReturned, Citation, LatencyMeasured


@dataclass
class Turn:
    """What an :class:`~fay_core.brain.agent.Answerer` writes its answer to.

    ``say()`` publishes text as it is produced; ``citations``, ``tools`` and ``answered_by`` are carried into the
    turn's :class:`~fay_core.events.AgentTurnFinished` and the audit log.
    """

    bus: Bus
    id: int
    question: str
    source: str = "text"
    started: float = field(default_factory=time.monotonic)
    text: str = ""
    citations: list[Citation] = field(default_factory=list)
    tools: list[dict[str, Any]] = field(default_factory=list)
    answered_by: str = ""
    heard: str | None = None  # set on barge-in: the words the user actually heard
    declined: bool = False  # the answerer declined (nothing to ground an answer on) and offered a colleague
    unsure: bool = False  # answered from uncertain sources only (a suggestion, or the LLM's pick): low confidence
    marks: dict[str, float] = field(default_factory=dict)

    def say(self, text: str) -> None:
        """Publish a piece of the answer."""
        if not text:
            return
        if not self.text:
            self.mark("agent_first_text")
        self.text += text
        self.bus.publish(AgentTextDelta(session_id=self.bus.session_id, turn_id=self.id, text=text))

    def mark(self, stage: str) -> float:
        """Record and publish that ``stage`` was reached now; returns ms since the turn started."""
        ms = (time.monotonic() - self.started) * 1000
        self.marks[stage] = ms
        self.bus.publish(LatencyMeasured(session_id=self.bus.session_id, turn_id=self.id, stage=stage, ms=ms))
        return ms

    def tool_called(self, name: str, arguments: dict[str, Any], call_id: str = "") -> None:
        self.tools.append({"name": name, "arguments": arguments, "call_id": call_id})
        self.bus.publish(
            AgentToolCalled(session_id=self.bus.session_id, turn_id=self.id, name=name, arguments=arguments,
                            call_id=call_id)
        )

    def tool_returned(
        self, name: str, call_id: str = "", result: str = "", error: str = "", ran_with: dict[str, Any] | None = None,
        artifact: Any = None,
    ) -> None:
        """Publish a tool's result; ``ran_with``, the arguments it really ran with, replaces in :attr:`tools` the
        model's, which are kept as ``model_arguments`` (the event still carries what the model asked for). An
        ``artifact`` (what the tool keeps for the audit record only, e.g. a camera frame's hash) is kept in
        :attr:`tools`, never published."""
        for call in reversed(self.tools):
            if call["call_id"] == call_id and call["name"] == name:
                call.update(result=result, error=error)
                if ran_with is not None:
                    call.update(model_arguments=call["arguments"], arguments=ran_with)
                if artifact is not None:
                    call["artifact"] = artifact
                break
        self.bus.publish(
            AgentToolReturned(
                session_id=self.bus.session_id, turn_id=self.id, name=name, call_id=call_id, result=result, error=error
            )
        )
