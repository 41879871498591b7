"""The offline answerer: with no LLM, reply with the best knowledge-base entry and its source, or decline.

It searches the persona's knowledge (hybrid dense + keyword retrieval, see :mod:`fay_core.knowledge`). When the
best hit's confidence is below ``knowledge.min_score`` it declines and offers a human colleague; it never
composes text of its own, so it cannot invent a rate.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..errors import FayError
from ..events import ErrorRaised
from ..persona import Persona
from .rag import Retriever, citation, excerpt
from .turn import Turn

if TYPE_CHECKING:
    from ..session import Session

log = logging.getLogger(__name__)


class OfflineAnswerer:
    """Answers with the best knowledge entry (with a ``[1]`` citation and a source line), or declines."""

    name = "offline"

    def __init__(self, session: Session, retriever: Retriever | None = None) -> None:
        self.session = session
        self.persona = session.persona
        self.retriever = retriever or Retriever(session.persona, session.app.knowledge, session.app.settings.knowledge)

    async def answer(self, turn: Turn) -> None:
        turn.answered_by = self.name
        try:
            hits = await self.retriever.retrieve(turn.question)
        except FayError as exc:  # a broken knowledge base: say so on the bus, and decline rather than guess
            log.warning("session %s: knowledge unavailable: %s", self.session.id, exc)
            self.session.bus.publish(ErrorRaised(session_id=self.session.id, turn_id=turn.id, source="knowledge",
                                                 message=str(exc), error_type=type(exc).__name__))
            hits = []
        turn.mark("retrieved")
        good = self.retriever.good(hits)
        if not good:
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


def decline_text(persona: Persona) -> str:
    """What the persona says when its knowledge has no answer."""
    if persona.knowledge.handoff:
        return persona.knowledge.handoff
    if persona.language == "zh":
        return "抱歉，我的知识库里没有这个问题的答案。需要我为您转接人工客服吗？"
    return "I'm sorry, I don't have that in my knowledge base. Would you like me to connect you with a colleague?"
