"""Sentence splitting of streamed LLM text, so the first sentence is spoken while the rest is generated.

:class:`SentenceSplitter` takes text deltas as they come and hands back complete sentences. It ends a sentence
at ``。！？；…`` and line breaks at once, and at ``. ! ? ;`` only when what follows shows it is an ending: not
inside a number (``3.5%``, ``1,000.25``), not after an abbreviation (``Mr.``, ``e.g.``, ``U.S.``) or an initial,
not a list number at the start of a line. Closing quotes and brackets stay with their sentence. A sentence longer
than ``max_chars`` is cut at a comma (or a space, or in Chinese between two wide characters), never inside a
number, so a run-on answer still starts speaking early.

:func:`speakable` removes what should not be read aloud: citation markers ``[1]``, Markdown emphasis and headings,
and the ``[uninterruptible]``/``[/uninterruptible]`` markers, which :func:`protected_pieces` reads: text between
them (terms and conditions, a legal notice) is spoken without barge-in (see :mod:`fay_core.voice.bargein`).
"""

from __future__ import annotations

import re

from ..avatar.emotion import strip_tags
from ..text import is_wide

#: abbreviations whose period does not end a sentence (compared lower-case, without the final period)
ABBREVIATIONS = frozenset(
    [
        "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "etc", "e.g", "i.e", "a.m", "p.m", "u.s", "u.k",
        "u.n", "e.u", "no", "nos", "vol", "fig", "inc", "ltd", "co", "corp", "dept", "est", "approx", "jan", "feb",
        "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "mon", "tue", "wed", "thu", "fri", "sat",
        "sun", "rev", "gen", "col", "lt", "sgt", "capt", "ph.d", "m.d", "b.a", "m.a", "cf", "al"
    ]
)

_HARD = set("。！？；…\n")
_SOFT = set(".!?;")
_CLOSERS = set("\"')]}”’」』）】")
_COMMAS = set(",，、：:")
_CITATION = re.compile(r"\s*\[\d+(?:\s*[,，]\s*\d+)*\]")
_MARKDOWN = re.compile(r"(\*\*|__|\*|`|^#+\s*|^\s*[-•]\s+)", re.MULTILINE)
_PROTECT = re.compile(r"\[(/?)uninterruptible\]", re.IGNORECASE)


def protected_pieces(sentence: str, protected: bool) -> tuple[list[tuple[str, bool]], bool]:
    """Split ``sentence`` at ``[uninterruptible]`` markers: its pieces with whether each is protected, and the
    state after it (``protected``: whether the sentence starts inside a marked passage)."""
    pieces: list[tuple[str, bool]] = []
    at = 0
    for m in _PROTECT.finditer(sentence):
        if sentence[at : m.start()].strip():
            pieces.append((sentence[at : m.start()], protected))
        protected = not m.group(1)
        at = m.end()
    if sentence[at:].strip():
        pieces.append((sentence[at:], protected))
    return pieces, protected


def speakable(text: str) -> str:
    """``text`` as it should be read aloud: no citation markers, emotion tags, Markdown markup or doubled spaces."""
    text = strip_tags(_PROTECT.sub("", _CITATION.sub("", text)))
    text = _MARKDOWN.sub("", text)
    return re.sub(r"[ \t]+", " ", text).strip()


class SentenceSplitter:
    """Accumulates streamed text; :meth:`feed` returns the sentences completed so far, :meth:`flush` the rest."""

    def __init__(self, *, min_chars: int = 2, max_chars: int = 220) -> None:
        self.min_chars = min_chars
        self.max_chars = max_chars
        self._buf = ""
        self._scan = 0  # where scanning for an ending resumes

    def feed(self, text: str) -> list[str]:
        """Add ``text``; return the complete sentences it finished (possibly none)."""
        self._buf += text
        out: list[str] = []
        while True:
            cut = self._find_end()
            if cut is None:
                break
            sentence, self._buf = self._buf[:cut], self._buf[cut:]
            self._scan = 0
            sentence = sentence.strip()
            if sentence:
                out.append(sentence)
        return out

    def flush(self) -> list[str]:
        """The text left over (the last sentence, without an ending mark)."""
        rest, self._buf, self._scan = self._buf.strip(), "", 0
        return [rest] if rest else []

    # --- finding endings -------------------------------------------------------------------------------

    def _find_end(self) -> int | None:
        buf = self._buf
        i = self._scan
        n = len(buf)
        while i < n:
            ch = buf[i]
            if ch in _HARD:
                j = self._after_closers(i + 1)
                if j is None:
                    self._scan = i
                    return None
                if len(buf[:j].strip()) >= self.min_chars:
                    return j
            elif ch in _SOFT:
                decided = self._soft_end(i)
                if decided is None:
                    self._scan = i
                    return None
                if decided:
                    return decided
            i += 1
        self._scan = n
        if n > self.max_chars:
            return self._long_cut()
        return None

    def _after_closers(self, j: int) -> int | None:
        """Index after the closing quotes/brackets (and ellipsis dots) following position ``j``; ``None`` if the
        text may still continue with one."""
        buf = self._buf
        while j < len(buf) and (buf[j] in _CLOSERS or buf[j] in "…。!?！？."):
            j += 1
        if j == len(buf):
            return None  # a closer may still come
        return j

    def _soft_end(self, i: int) -> int | None | bool:
        """For ``. ! ? ;`` at ``i``: the cut position, ``False`` (not an ending) or ``None`` (need more text)."""
        buf = self._buf
        j = self._after_closers(i + 1)
        if j is None:
            return None
        if not buf[j].isspace():
            # "3.5", "e.g.x", "U.S." followed by more letters, or CJK straight after: only CJK counts as an ending
            return j if is_wide(buf[j]) and buf[i] != "." else False
        if buf[i] != ".":
            return j  # ! ? ; followed by a space
        # a period followed by space: look at the word before it and the text after it
        word = re.search(r"([\w.]+)$", buf[:i])
        before = word.group(1) if word else ""
        if before.lower().rstrip(".") in ABBREVIATIONS:
            return False
        if len(before) == 1 and before.isalpha() and before.isupper():
            return False  # an initial: "J. K. Rowling"
        if before.isdigit() and buf[:i].rstrip()[-len(before) - 1 : -len(before)] in ("", "\n"):
            return False  # "1. Open the app" at the start of a line
        nxt = buf[j:].lstrip()
        if not nxt:
            return None
        if nxt[0].islower():
            return False  # "approx. two" and other unknown abbreviations
        return j if len(buf[:j].strip()) >= self.min_chars else False

    def _long_cut(self) -> int | None:
        """Where to cut a sentence longer than ``max_chars``: after its last comma (not one inside a number,
        ``2,000`` or ``9:00``), else its last space, else (Chinese written without either) after its last wide
        character."""
        whole = self._buf
        buf = whole[: self.max_chars]
        low = self.max_chars // 3
        for k in range(len(buf) - 1, low, -1):
            if buf[k] in _COMMAS and not (whole[k - 1].isdigit() and whole[k + 1].isdigit()):
                return k + 1
        k = buf.rfind(" ")
        if k > low:
            return k + 1
        for k in range(len(buf) - 1, low, -1):
            if is_wide(buf[k]) and not whole[k + 1].isascii():
                return k + 1
        return None


