"""Guardrails for knowledge-only personas: numbers only from sources, and sentences released only once checked.

A bank teller must never say a rate, fee or limit that its sources (retrieved knowledge and tool results) do not
contain. :class:`NumberGate` sits between the LLM stream and the user: text streams through as it comes, except
that a number is held back until it is complete and checked against the allowed texts. The first unsupported
number stops the answer before the user sees it; the answerer then says a safe replacement instead.
Numbers written out in words ("seven percent") are not recognised.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from decimal import Decimal, InvalidOperation

_MARKER = re.compile(r"\[\d{1,3}\]")
_NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?")
_TRAILING = re.compile(r"\[?\d[\d.,]*$|\[$")  # a number (or citation marker) that may still be growing


def normalize_number(raw: str) -> str:
    """``"50,000"`` -> ``"50000"``, ``"2.10"`` -> ``"2.1"``, ``"09"`` -> ``"9"``."""
    s = raw.replace(",", "")
    try:
        d = Decimal(s).normalize()
    except InvalidOperation:
        return s
    text = format(d, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def numbers_in(text: str) -> set[str]:
    """Normalized numbers in ``text`` (citation markers like ``[1]`` are not numbers of the answer)."""
    text = _MARKER.sub(" ", text)
    return {normalize_number(m) for m in _NUMBER.findall(text)}


def unsupported_numbers(answer: str, allowed: Iterable[str]) -> list[str]:
    """Numbers in ``answer`` that none of the ``allowed`` texts contains, in order of appearance."""
    ok: set[str] = set()
    for text in allowed:
        ok |= numbers_in(text)
    out: list[str] = []
    for m in _NUMBER.findall(_MARKER.sub(" ", answer)):
        n = normalize_number(m)
        if n not in ok and n not in out:
            out.append(n)
    return out


class NumberGate:
    """Streams text through, holding each number back until it is complete and supported.

    ``release`` is called with text that passed; after a violation the gate is ``tripped`` (with the offending
    numbers in ``violations``) and releases nothing more. ``hold`` keeps everything back (e.g. until a tool has
    supplied the facts an answer needs); :meth:`open` releases what passed while held.
    """

    def __init__(self, allowed: list[str], release: Callable[[str], None], *, enabled: bool = True,
                 hold: bool = False) -> None:
        self.allowed = allowed
        self.release = release
        self.enabled = enabled
        self.hold = hold
        self.tripped = False
        self.violations: list[str] = []
        self._buffer = ""
        self._held: list[str] = []

    def allow(self, text: str) -> None:
        """Add a text numbers may come from (a tool's result)."""
        self.allowed.append(text)

    def feed(self, text: str) -> None:
        if self.tripped or not text:
            return
        if not self.enabled:
            self._emit(text)
            return
        self._buffer += text
        m = _TRAILING.search(self._buffer)
        cut = m.start() if m else len(self._buffer)
        ready, self._buffer = self._buffer[:cut], self._buffer[cut:]
        if ready:
            self._check(ready)

    def flush(self) -> None:
        """The stream ended: check and release what is left."""
        if self._buffer and not self.tripped:
            rest, self._buffer = self._buffer, ""
            self._check(rest)

    def open(self) -> None:
        """Stop holding: release the sentences that passed while held."""
        self.hold = False
        held, self._held = self._held, []
        for part in held:
            self.release(part)

    @property
    def held_text(self) -> str:
        return "".join(self._held) + self._buffer

    def _check(self, text: str) -> bool:
        """Release ``text`` up to its first unsupported number; trip there."""
        masked = _MARKER.sub(lambda m: " " * len(m.group()), text)
        ok = set().union(*(numbers_in(t) for t in self.allowed)) if self.allowed else set()
        for m in _NUMBER.finditer(masked):
            if normalize_number(m.group()) not in ok:
                self._emit(text[: m.start()])
                self.tripped = True
                self.violations = unsupported_numbers(text[m.start():], self.allowed)
                self._buffer = ""
                return False
        self._emit(text)
        return True

    def _emit(self, text: str) -> None:
        if not text:
            return
        if self.hold:
            self._held.append(text)
        else:
            self.release(text)
