"""Talk to a persona from Python: start the runtime, open a session, stream an answer.

Runs offline: with no LLM configured the persona answers from its knowledge and cites the source.
Set FAY_LLM__MODEL (and FAY_LLM__API_BASE / FAY_LLM__API_KEY) to answer through an LLM instead.

    python examples/01_text_chat.py "What are your opening hours?"
"""

from __future__ import annotations

import asyncio
import sys

from fay_core.app import Fay
from fay_core.events import AgentTextDelta, AgentTurnFinished


async def main(question: str, persona: str = "bank_teller_en") -> AgentTurnFinished:
    async with Fay() as fay:
        session = await fay.create_session(persona)
        async for event in session.ask(question):
            if isinstance(event, AgentTextDelta):
                print(event.text, end="", flush=True)
            elif isinstance(event, AgentTurnFinished):
                print()
                for c in event.citations:
                    print(f"  [{c.index}] {c.source} {c.title}")
                return event
    raise RuntimeError("no answer")


if __name__ == "__main__":
    asyncio.run(main(" ".join(sys.argv[1:]) or "What are your opening hours?"))
