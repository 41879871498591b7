"""The offline answerer: with no LLM, reply with the best knowledge-base entry and its source, or decline.

It asks the persona's knowledge what it answers of the question (:meth:`Retriever.assess`, see
:mod:`fay_core.knowledge.answerability`): each answered part gets its entry with a ``[n]`` citation and a source
line (a two-part question, two sources); when no part is confident but one is close (``knowledge.suggest_score``),
the best entry is offered as a suggestion behind a check question ("Did you mean …?"); otherwise it declines and
offers a human colleague. It never composes text of its own, so it cannot invent a rate.

For a persona with a camera (``vision.enabled``) it also recognises a request to look at something shown to the
camera ("what is this?", "帮我看一下这封信", :func:`~fay_core.vision.look.is_look_request`): the look model answers
that, or the avatar says it cannot read documents here (:class:`~fay_core.vision.look.Looker`).
"""

from __future__ import annotations

import logging

from ..bus import Bus
from ..events import ErrorRaised
from ..knowledge import Hit
from ..knowledge.answerability import Assessment
from ..persona import Persona
from ..vision.look import LOOK_TOOL, Looker, is_look_request
from .rag import Retriever, citation, excerpt
from .turn import Turn

log = logging.getLogger(__name__)


class OfflineAnswerer:
    """Answers with the best knowledge entry (with a ``[1]`` citation and a source line), or declines; with a
    ``looker``, a request to look at something goes to the camera's look instead."""

    name = "offline"

    def __init__(self, bus: Bus, persona: Persona, retriever: Retriever, looker: Looker | None = None) -> None:
        self.bus = bus
        self.persona = persona
        self.retriever = retriever
        self.looker = looker

    async def answer(self, turn: Turn) -> None:
        turn.answered_by = self.name
        if self.looker is not None and is_look_request(turn.question):
            await self._look(turn, self.looker)
            return
        try:
            assessment = await self.retriever.assess(turn.question)
        except Exception as exc:  # a broken knowledge base: say so on the bus, and decline rather than guess
            knowledge_failed(self.bus, turn, exc)
            assessment = Assessment(turn.question)
        turn.mark("retrieved")
        zh = self.persona.language == "zh"
        answered = assessment.sources(("answer",))
        if answered:
            self._cite(turn, answered)
            if any(p.verdict != "answer" for p in assessment.parts):  # a part the knowledge does not answer
                turn.say("\n" + (f"其余的问题：{decline_text(self.persona)}" if zh
                                 else f"For the rest of your question: {decline_text(self.persona)}"))
            return
        suggested = assessment.sources(("uncertain",))[:1]
        if suggested:
            hit = suggested[0]
            turn.unsure = True
            turn.say(f"我不太确定您问的是不是：“{hit.entry.title}”？如果是的话：\n" if zh
                     else f"I'm not sure I understood. Did you mean: \u201c{hit.entry.title}\u201d? If so:\n")
            self._cite(turn, suggested)
            turn.say("\n" + ("如果不是，需要我为您转接人工客服吗？" if zh
                             else "If not, would you like me to connect you with a colleague?"))
            return
        turn.declined = True
        turn.say(decline_text(self.persona))

    async def _look(self, turn: Turn, looker: Looker) -> None:
        """Answer from the camera's latest frame (a tool call in the turn's record, with the frame's hash)."""
        call_id = f"look_{turn.id}"
        turn.tool_called(LOOK_TOOL, {"question": turn.question}, call_id)
        sight = await looker.look(turn.question)
        turn.tool_returned(LOOK_TOOL, call_id, result=sight.text if sight.looked else "", error=sight.error,
                           artifact=sight.artifact())
        turn.mark("looked")
        turn.declined = not sight.looked
        turn.say(sight.text)

    def _cite(self, turn: Turn, hits: list[Hit]) -> None:
        """Each hit's text with its ``[n]`` marker, then the source lines."""
        zh = self.persona.language == "zh"
        lines = []
        for n, hit in enumerate(hits, len(turn.citations) + 1):
            e = hit.entry
            turn.citations.append(citation(n, hit))
            body = e.text if e.kind == "faq" else excerpt(e.text)
            label = e.title if e.kind == "faq" else (e.section or e.title)
            turn.say(("\n" if n > 1 else "") + f"{body.strip()} [{n}]")
            lines.append(f"来源 [{n}]：{e.source}：{label}" if zh else f"Source [{n}]: {e.source}: {label}")
        turn.say("\n" + "\n".join(lines))


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
