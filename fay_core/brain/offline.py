"""The offline answerer: with no LLM, reply with the best knowledge-base entry and its source, or decline.

It searches the persona's knowledge (hybrid dense + keyword retrieval, see :mod:`fay_core.knowledge`). When the
best hit's confidence is below ``knowledge.min_score`` it declines and offers a human colleague; it never
composes text of its own, so it cannot invent a rate.
"""

from __future__ import annotations

import logging

from ..bus import Bus
from ..events import ErrorRaised
from ..persona import Persona
from .rag import Retriever, citation, excerpt
from .turn import Turn

log = logging.getLogger(__name__)


class OfflineAnswerer:
    """Answers with the best knowledge entry (with a ``[1]`` citation and a source line), or declines."""

    name = "offline"

    def __init__(self, bus: Bus, persona: Persona, retriever: Retriever) -> None:
        self.bus = bus
        self.persona = persona
        self.retriever = retriever

    async def answer(self, turn: Turn) -> None:
        turn.answered_by = self.name
        try:
            hits = await self.retriever.retrieve(turn.question)
        except Exception as exc:  # a broken knowledge base: say so on the bus, and decline rather than guess
            knowledge_failed(self.bus, turn, exc)
            hits = []
        turn.mark("retrieved")
        good = self.retriever.good(hits)
        if not good:
            turn.declined = True
            turn.say(decline_text(self.persona))
            return
        hit = good[0]
        e = hit.entry
        turn.citations.append(citation(1, hit))
        body = e.text if e.kind == "faq" else excerpt(e.text)
        label = e.title if e.kind == "faq" else (e.section or e.title)
        turn.say(f"{body.strip()} [1]")
        if self.persona.language == "zh":
            turn.say(f"\n来源 [1]：{e.source}：{label}")
        else:
            turn.say(f"\nSource [1]: {e.source}: {label}")


def knowledge_failed(bus: Bus, turn: Turn, exc: Exception) -> None:
    """Report a retrieval that raised ``exc`` (any exception: a damaged store raises SQLite's and Chroma's own)."""
    log.warning("session %s turn %d: knowledge unavailable: %s", bus.session_id, turn.id, exc)
    bus.publish(ErrorRaised.of(exc, session_id=bus.session_id, turn_id=turn.id, source="knowledge"))


def decline_text(persona: Persona) -> str:
    """What the persona says when its knowledge has no answer."""
    if persona.knowledge.handoff:
        return persona.knowledge.handoff
    if persona.language == "zh":
        return "抱歉，我的知识库里没有这个问题的答案。需要我为您转接人工客服吗？"
    return "I'm sorry, I don't have that in my knowledge base. Would you like me to connect you with a colleague?"
