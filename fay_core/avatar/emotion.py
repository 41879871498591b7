"""Emotion tags: the LLM may write ``[happy]``, ``[sad]``, ``[surprised]``, ``[angry]``, ``[thinking]``,
``[concerned]`` or ``[neutral]`` in its answer; the avatar shows that expression while it speaks that turn.

Tags are found in the streamed :class:`~fay_core.events.AgentTextDelta` text (a tag split across deltas is
still found). Speech and displayed text should not contain them: :func:`strip_tags` removes them.
"""

from __future__ import annotations

import re

from .rig import EXPRESSIONS

NEUTRAL = "neutral"
TAG = re.compile(r"\[(" + "|".join((*EXPRESSIONS, NEUTRAL)) + r")\]\s?", re.IGNORECASE)
_MAX_TAG = max(len(e) for e in (*EXPRESSIONS, NEUTRAL)) + 2


def strip_tags(text: str) -> str:
    """``text`` without emotion tags (``"[happy] Sure!"`` → ``"Sure!"``)."""
    return TAG.sub("", text)


class TagScanner:
    """Finds emotion tags in a stream of text pieces."""

    def __init__(self) -> None:
        self._tail = ""

    def feed(self, piece: str) -> list[str]:
        """The tags (lower case) completed by ``piece``, in order."""
        text = self._tail + piece
        found = [m.group(1).lower() for m in TAG.finditer(text)]
        last = None
        for m in TAG.finditer(text):
            last = m
        rest = text[last.end() :] if last else text
        cut = rest.rfind("[")
        self._tail = rest[cut:] if cut >= 0 and len(rest) - cut <= _MAX_TAG else ""
        return found
