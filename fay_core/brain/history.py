"""A session's conversation history, trimmed to fit the model's context."""

from __future__ import annotations

from dataclasses import dataclass

from ..text import is_wide


@dataclass
class Message:
    role: str  # "user" | "assistant" | "tool" | "system"
    content: str
    interrupted: bool = False
    turn_id: int = 0

    def as_llm(self) -> dict[str, str]:
        content = self.content + (" [interrupted by the user]" if self.interrupted else "")
        return {"role": self.role, "content": content}


def estimate_tokens(text: str) -> int:
    """A cheap token estimate: ~4 characters per token for Latin text, ~1 per CJK character."""
    cjk = sum(1 for ch in text if is_wide(ch))
    return cjk + (len(text) - cjk) // 4 + 4


class History:
    """Messages of one session, oldest first."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    def add(self, role: str, content: str, *, interrupted: bool = False, turn_id: int = 0) -> Message:
        msg = Message(role, content, interrupted, turn_id)
        self.messages.append(msg)
        return msg

    def find(self, role: str, turn_id: int) -> Message | None:
        return next((m for m in reversed(self.messages) if m.role == role and m.turn_id == turn_id), None)

    def window(self, budget_tokens: int) -> list[dict[str, str]]:
        """The most recent messages whose estimated size fits ``budget_tokens``, as LLM messages.

        The window never starts with an assistant message, so the model always sees what it answered.
        """
        picked: list[Message] = []
        used = 0
        for msg in reversed(self.messages):
            cost = estimate_tokens(msg.content)
            if used + cost > budget_tokens and picked:
                break
            picked.append(msg)
            used += cost
        picked.reverse()
        while picked and picked[0].role == "assistant":
            picked.pop(0)
        return [m.as_llm() for m in picked]

    def __len__(self) -> int:
        return len(self.messages)
