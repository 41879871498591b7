"""Sentence splitting of streamed LLM text, so the first sentence is spoken while the rest is generated.

:class:`SentenceSplitter` takes text deltas as they come and hands back complete sentences. It ends a sentence
at ``。！？；…`` and line breaks at once, and at ``. ! ? ;`` only when what follows shows it is an ending: not
inside a number (``3.5%``, ``1,000.25``), not after an abbreviation (``Mr.``, ``e.g.``, ``U.S.``) or an initial,
not a list number at the start of a line. Closing quotes and brackets stay with their sentence. A sentence longer
than ``max_chars`` is cut at a comma (or a space, or in Chinese between two wide characters), never inside a
number, so a run-on answer still starts speaking early.

With ``first_clause_chars`` the first piece of an answer is a clause, not a sentence, so the answer's first audio
does not wait for a long first sentence to be synthesized: it ends at the first clause mark (``, ; : ，、；：``,
not inside ``2,000`` or ``9:00``) once it holds that many characters (a wide character counts three: a
syllable), or, with no mark, before a conjunction (``and``, ``but``, ``which``…; ``而且``, ``但是``…) once it
holds ``first_phrase_chars``. Later pieces are whole sentences: by then the first piece is playing and the next
sentence is synthesized while it does, and each cut is a seam where the voice starts its intonation anew.
:func:`ends_sentence` tells a piece cut inside a sentence (the voice pipeline closes its seam).

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
_CLAUSE = set(",，、；;：:")
_ENDINGS = set(".!?。！？…")
#: words a first piece without a clause mark may be cut before (a phrase boundary)
_CONJUNCTION = re.compile(
    r"\s(?=(?:and|but|or|so|because|which|while|whereas|where|when|then|unless|although|though)\s)"
    r"|(?<=[^\s\d])(?=(?:而且|但是|并且|或者|然后|因为|所以|如果|以及)[^\s])"
)
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


def ends_sentence(piece: str) -> bool:
    """True if ``piece`` ends a sentence (a piece cut at a clause or a conjunction does not)."""
    text = piece.rstrip().rstrip("".join(_CLOSERS))
    return not text or text[-1] in _ENDINGS


def spoken_length(text: str) -> int:
    """Length of ``text`` for the splitter's thresholds: a wide (CJK) character counts three (one syllable)."""
    return sum(3 if is_wide(c) else 1 for c in text)


def speakable(text: str) -> str:
    """``text`` as it should be read aloud: no citation markers, emotion tags, Markdown markup or doubled spaces."""
    text = strip_tags(_PROTECT.sub("", _CITATION.sub("", text)))
    text = _MARKDOWN.sub("", text)
    return re.sub(r"[ \t]+", " ", text).strip()


class SentenceSplitter:
    """Accumulates streamed text; :meth:`feed` returns the sentences completed so far, :meth:`flush` the rest."""

    def __init__(self, *, min_chars: int = 2, max_chars: int = 220, first_clause_chars: int = 0,
                 first_phrase_chars: int = 0) -> None:
        self.min_chars = min_chars
        self.max_chars = max_chars
        #: the first piece may end at a clause mark from this length (0: the first piece is a sentence)
        self.first_clause_chars = first_clause_chars
        #: ... or, without a mark, before a conjunction from this length (0: never)
        self.first_phrase_chars = first_phrase_chars
        self.pieces = 0  #: pieces handed out so far
        self._buf = ""
        self._scan = 0  # where scanning for an ending resumes

    def feed(self, text: str) -> list[str]:
        """Add ``text``; return the complete sentences it finished (possibly none)."""
        self._buf += text
        out: list[str] = []
        while True:
            cut = self._find_end()
            if self.pieces == 0:
                first = self._first_cut(len(self._buf) if cut is None else cut)
                cut = first if first is not None else cut
            if cut is None:
                break
            sentence, self._buf = self._buf[:cut], self._buf[cut:]
            self._scan = 0
            sentence = sentence.strip()
            if sentence:
                out.append(sentence)
                self.pieces += 1
        return out

    def flush(self) -> list[str]:
        """The text left over (the last sentence, without an ending mark)."""
        rest, self._buf, self._scan = self._buf.strip(), "", 0
        if rest:
            self.pieces += 1
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

    def _first_cut(self, limit: int) -> int | None:
        """Where the first piece ends inside its sentence: after its first clause mark from
        :attr:`first_clause_chars` (one between two digits is part of a number: ``2,000``, ``9:00``), else before
        a conjunction from :attr:`first_phrase_chars`; ``None`` if neither is there (before ``limit``, where the
        sentence ends) yet."""
        buf = self._buf[:limit]
        whole = self._buf
        if self.first_clause_chars:
            for k, ch in enumerate(buf):
                if ch not in _CLAUSE:
                    continue
                if buf[k - 1 : k].isdigit():
                    if k + 1 >= len(whole):
                        return None  # "2," may be "2,000": wait for the next character
                    if whole[k + 1].isdigit():
                        continue
                if spoken_length(buf[:k].strip()) >= self.first_clause_chars:
                    j = k + 1
                    while j < len(whole) and whole[j] in _CLOSERS:
                        j += 1
                    if j == len(whole) and buf[k] in ":：":
                        return None  # "他说：" may open a quote
                    return j
        if self.first_phrase_chars:
            for m in _CONJUNCTION.finditer(buf):
                if spoken_length(buf[: m.start()].strip()) >= self.first_phrase_chars:
                    return m.start()
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


