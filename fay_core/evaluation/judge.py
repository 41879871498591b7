"""The expectations an LLM plays: a judge that checks a criterion, and a simulated customer with a goal.

Both use the configured LLM (the persona's, as its sessions resolve it: :meth:`LLMConfig.resolve`) through
litellm, like the LLM answerer. The judge answers at temperature 0 with a JSON verdict,
``{"pass": true|false, "reason": "..."}``; a reply that is not such an object fails the expectation and says so
(a judge that cannot be read has not passed anything).
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from ..brain.llm import LLMClient, LLMConfig
from ..persona import Persona
from .checks import Transcript, TurnResult
from .spec import Simulation

JUDGE_PROMPT = """\
You check the answers of a digital employee ({name}) against one criterion.
Read the conversation and decide whether the criterion holds. Reply with one JSON object and nothing else:
{{"pass": true or false, "reason": "one short sentence"}}"""

CUSTOMER_PROMPT = """\
You play a customer talking to {name}: {description}
Your goal: {goal}
Write only your next message to them, briefly and in your own words, as a real customer would{language}.
Do not say you are playing a role. When your goal is met, or clearly cannot be met, reply with exactly: DONE"""

_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


class Judge:
    """Checks a criterion over a conversation with the configured LLM."""

    def __init__(self, config: LLMConfig, persona: Persona) -> None:
        self.config = config
        self.persona = persona
        self.client = LLMClient(dataclasses.replace(config, temperature=0.0))

    def messages(self, criterion: str, transcript: Transcript) -> list[dict[str, Any]]:
        sources = "\n".join(f"- {c.chunk_id or c.source}: {' '.join(c.text.split())[:300]}"
                            for c in transcript.sources()) or "(none)"
        return [
            {"role": "system", "content": JUDGE_PROMPT.format(name=self.persona.name)},
            {"role": "user", "content": f"Criterion: {criterion}\n\nConversation:\n{transcript.text()}\n\n"
                                        f"Sources the answers cited:\n{sources}"},
        ]

    async def verdict(self, criterion: str, transcript: Transcript) -> str:
        """``""`` if the criterion holds, else the failure (not met, an unreadable verdict, or a failed LLM)."""
        try:
            reply = await self.client.complete(self.messages(criterion, transcript))
        except Exception as exc:
            return f"judge: the LLM failed: {exc}"
        passed, reason = parse_verdict(reply)
        if passed is None:
            return f"judge: {reason}"
        return "" if passed else f"judge: not met ({criterion}): {reason or 'no reason given'}"


def parse_verdict(reply: str) -> tuple[bool | None, str]:
    """``(passed, reason)`` from a judge's reply; ``(None, why)`` when it is not a JSON verdict.

    A reply wrapped in a Markdown code fence is read inside the fence; anything else must be the object alone.
    """
    text = reply.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    shown = " ".join(reply.split())
    shown = repr(shown if len(shown) <= 120 else shown[:119] + "…")
    try:
        data = json.loads(text)
    except ValueError:
        return None, f"the LLM's verdict is not JSON (expected {{\"pass\": true|false, \"reason\": \"...\"}}): {shown}"
    if not isinstance(data, dict) or not isinstance(data.get("pass"), bool):
        return None, f"the LLM's verdict has no boolean \"pass\" (expected {{\"pass\": true|false, ...}}): {shown}"
    reason = data.get("reason")
    return data["pass"], reason if isinstance(reason, str) else ""


class SimulatedCustomer:
    """A customer played by the configured LLM, pursuing ``simulation.goal``."""

    def __init__(self, config: LLMConfig, persona: Persona, simulation: Simulation) -> None:
        self.client = LLMClient(config)
        self.persona = persona
        self.simulation = simulation

    def messages(self, turns: list[TurnResult]) -> list[dict[str, Any]]:
        """The conversation from the customer's side: the persona's answers are the user's messages."""
        p = self.persona
        language = {"zh": ", in Chinese", "en": ", in English"}.get(p.language, "")
        system = CUSTOMER_PROMPT.format(name=p.name, description=p.description or p.name,
                                        goal=self.simulation.goal, language=language)
        out: list[dict[str, Any]] = [{"role": "system", "content": system}]
        if not turns:
            out.append({"role": "user", "content": p.greeting or "Hello, how can I help you?"})
        for t in turns:
            out.append({"role": "assistant", "content": t.question})
            out.append({"role": "user", "content": t.answer})
        return out

    async def next_message(self, turns: list[TurnResult]) -> str | None:
        """The customer's next message, or ``None`` when they are done. Raises what the LLM client raises."""
        if not turns and self.simulation.opening:
            return self.simulation.opening
        reply = (await self.client.complete(self.messages(turns))).strip()
        if not reply or reply.strip(" .!\"'").upper() == "DONE":
            return None
        return reply
