"""What the knowledge base holds: entries (an FAQ entry or a document chunk) and search hits."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from ..text import han_count

EntryKind = Literal["faq", "chunk"]



@dataclass(frozen=True)
class Entry:
    """One unit of knowledge, cited as a whole.

    An FAQ entry (``kind="faq"``) has a ``title`` (its main question), ``text`` (the answer) and optionally more
    phrasings in ``questions``; every phrasing is indexed as its own row that points to the entry. A document
    chunk (``kind="chunk"``) is a section of a file (or part of one), ``title`` being its heading; it may carry
    phrasings too (the questions customers ask that it answers), indexed as question rows after its passage.
    Loaders registered through ``register_knowledge_loaders`` return these.
    """

    id: str
    title: str
    text: str
    kind: EntryKind = "chunk"
    source: str = ""
    section: str = ""
    page: int | None = None
    questions: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def language(self) -> str:
        """``zh`` when the text is mostly Chinese, else ``en``."""
        sample = (self.title + self.text)[:400]
        return "zh" if han_count(sample) * 4 > len(sample) else "en"

    def rows(self) -> list[tuple[str, str]]:
        """The ``(kind, text)`` rows indexed for this entry: ``question`` rows are embedded as queries."""
        if self.kind == "faq":
            phrasings = list(dict.fromkeys(q.strip() for q in (self.title, *self.questions) if q.strip()))
            out = [("question", q) for q in phrasings]
            if self.text.strip():
                out.append(("passage", f"{self.title}\n{self.text}"))
            return out
        head = self.section or self.title
        passage = ("passage", f"{head}\n{self.text}" if head else self.text)
        return [passage, *(("question", q) for q in dict.fromkeys(q.strip() for q in self.questions) if q)]

    def cited_text(self) -> str:
        """What an answerer reads: the question and answer, or the chunk under its heading."""
        if self.kind == "faq":
            return f"Q: {self.title}\nA: {self.text}" if self.text else self.title
        head = self.section or self.title
        return f"{head}\n{self.text}" if head else self.text


@dataclass(frozen=True)
class Hit:
    """A retrieved entry.

    ``score`` is the fused rank score; ``similarity`` the best dense cosine of its rows; ``share`` the entry's part
    of the dense and intent evidence among the candidates (0-1); ``confidence`` = similarity +
    ``knowledge.confidence_weight`` * ln(share), what the guardrail compares with ``knowledge.min_score``: a close
    match that several entries share equally is less certain than one that only this entry has.
    """

    entry: Entry
    score: float
    similarity: float
    collection: str = ""
    matched: str = ""  # the row that matched best (a question phrasing or a chunk)
    exact: bool = False  # an identifier in the query (a product code, an account id) occurs in this entry
    share: float = 1.0
    confidence: float = math.nan  # NaN: the similarity

    def __post_init__(self) -> None:
        if math.isnan(self.confidence):
            object.__setattr__(self, "confidence", self.similarity)

    @property
    def id(self) -> str:
        return self.entry.id

    @property
    def source(self) -> str:
        return self.entry.source

    def as_json(self) -> dict[str, Any]:
        e = self.entry
        return {
            "id": e.id,
            "collection": self.collection,
            "source": e.source,
            "section": e.section,
            "page": e.page,
            "title": e.title,
            "score": round(self.score, 6),
            "similarity": round(self.similarity, 4),
            "confidence": round(self.confidence, 4),
            "exact": self.exact,
            "text": e.cited_text(),
        }


@runtime_checkable
class Reranker(Protocol):
    """Reorders fused candidates for a query (registered with ``register_rerankers``, chosen by
    ``knowledge.reranker``). It may drop hits; it must not invent entries."""

    name: str

    def rerank(self, query: str, hits: Sequence[Hit]) -> list[Hit]: ...
