"""Declined and low-confidence questions, grouped by similarity, and the FAQ entries the team added for them.

A question counts when its turn was declined (nothing in the knowledge answered it: the persona offered a colleague)
or answered unsure (only a suggestion behind a check question, or the LLM's pick among uncertain sources). The
questions of each persona are embedded with the knowledge base's embedder and grouped greedily: a question joins
the first group whose first question is at least ``threshold`` similar (cosine), else it starts a group. Groups
are listed by their count, largest first.

"Add to knowledge" (see :mod:`.knowledge`) records what it added in ``<data_dir>/console/added.json``: a group
all of whose occurrences came before an entry that lists one of its questions is ``resolved`` by that entry.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .review import TurnView

log = logging.getLogger(__name__)

#: the cosine similarity from which two questions are one group (e5 embeddings: paraphrases score about 0.9 and
#: more, questions about other things of the same bank about 0.8)
GROUP_THRESHOLD = 0.88

Embed = Callable[[list[str]], np.ndarray]


@dataclass
class Group:
    """Similar declined or unsure questions of one persona."""

    persona: str
    question: str  #: the group's first question (what it is compared by)
    questions: dict[str, int] = field(default_factory=dict)  #: each wording and how often it was asked
    declined: int = 0
    unsure: int = 0
    sessions: set[str] = field(default_factory=set)
    first: str = ""
    last: str = ""
    resolved: str | None = None  #: the entry added for it, once added

    @property
    def count(self) -> int:
        return self.declined + self.unsure

    @property
    def id(self) -> str:
        return hashlib.sha256(f"{self.persona}\n{self.question}".encode()).hexdigest()[:12]

    def as_json(self) -> dict[str, Any]:
        wordings = sorted(self.questions.items(), key=lambda kv: (-kv[1], kv[0]))
        return {"id": self.id, "persona": self.persona, "question": self.question, "count": self.count,
                "declined": self.declined, "unsure": self.unsure, "sessions": len(self.sessions),
                "questions": [{"text": q, "count": n} for q, n in wordings], "first": self.first,
                "last": self.last, "resolved": self.resolved}


def normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


def group(views: list[TurnView], embed: Callable[[str], Embed | None],
          threshold: float = GROUP_THRESHOLD) -> list[Group]:
    """The declined and unsure questions of ``views`` grouped per persona; ``embed(persona)`` embeds that
    persona's questions (``None``: no embedder, each wording is its own group)."""
    wanted = [v for v in views if v.answer is not None and (v.declined or v.unsure) and v.question.strip()]
    out: list[Group] = []
    for persona in sorted({v.persona for v in wanted}):
        mine = [v for v in wanted if v.persona == persona]
        texts = list(dict.fromkeys(v.question.strip() for v in mine))
        embedder = embed(persona)
        vectors = None
        if embedder is not None and texts:
            try:
                vectors = _unit(embedder(texts))
            except Exception as exc:  # a failing embedder: the same wordings are still grouped
                log.warning("declined questions of %s are grouped by wording only: the embedder failed: %s",
                            persona, exc)
        heads: list[int] = []  # index in texts of each group's first question
        of_text: dict[str, Group] = {}
        groups: list[Group] = []
        for i, text in enumerate(texts):
            home = None
            if vectors is not None and heads:
                sims = vectors[heads] @ vectors[i]
                best = int(np.argmax(sims))
                if sims[best] >= threshold:
                    home = groups[best]
            elif vectors is None:
                home = next((g for g in groups if normalise(g.question) == normalise(text)), None)
            if home is None:
                home = Group(persona, text)
                groups.append(home)
                heads.append(i)
            of_text[text] = home
        for v in mine:
            g = of_text[v.question.strip()]
            g.questions[v.question.strip()] = g.questions.get(v.question.strip(), 0) + 1
            g.declined += v.declined
            g.unsure += v.unsure and not v.declined
            g.sessions.add(v.session)
            g.first = min(g.first, v.time) if g.first else v.time
            g.last = max(g.last, v.time)
        out.extend(groups)
    out.sort(key=lambda g: (g.count, g.last), reverse=True)
    return out


def _unit(vectors: np.ndarray) -> np.ndarray:
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(norms == 0, 1, norms)


class AddedEntries:
    """The FAQ entries added from the console, per tenant, in ``<data_dir>/console/added.json`` (written
    atomically)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "added.json"
        self._lock = threading.Lock()

    def all(self) -> list[dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        return list(data.get("entries", [])) if isinstance(data, dict) else []

    def add(self, tenant: str, persona: str, entry: str, questions: list[str]) -> dict[str, Any]:
        record = {"tenant": tenant, "persona": persona, "entry": entry, "questions": questions,
                  "time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")}
        with self._lock:
            entries = [*self.all(), record]
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"entries": entries}, ensure_ascii=False, indent=1), encoding="utf-8")
            os.replace(tmp, self.path)
        return record

    def resolve(self, tenant: str, groups: list[Group]) -> None:
        """Mark each group that an added entry answers (every occurrence before the entry was added)."""
        added = [a for a in self.all() if a.get("tenant") == tenant]
        for g in groups:
            wordings = {normalise(q) for q in g.questions}
            for a in added:
                if a.get("persona") == g.persona and g.last <= str(a.get("time", "")) and \
                        wordings & {normalise(q) for q in a.get("questions", [])}:
                    g.resolved = str(a["entry"])
