"""The offline answerer: replies from the persona's FAQ without an LLM, naming the entry it used.

It matches the question against FAQ entries by overlapping words and character bigrams (which works for Chinese
without segmentation). The knowledge-base issue replaces the matcher with retrieval over Chroma; the contract —
best entry with its source, or a clear decline — stays.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..errors import KnowledgeError
from ..events import Citation
from ..persona import Persona
from .turn import Turn

_WORD = re.compile(r"[a-z0-9]+(?:[.'-][a-z0-9]+)*|[\u3400-\u9fff]", re.IGNORECASE)
_STOP = frozenset(
    ["a", "an", "the", "is", "are", "was", "do", "does", "i", "you", "my", "me", "to", "of", "for", "in", "on", "and",
     "or", "what", "how", "can", "it", "be", "with"]
)


@dataclass(frozen=True)
class Entry:
    id: str
    question: str
    answer: str
    source: str


def features(text: str) -> Counter[str]:
    """Words (lower-cased, stop words out) and CJK character bigrams."""
    tokens = [t.lower() for t in _WORD.findall(text)]
    feats: Counter[str] = Counter(t for t in tokens if t not in _STOP and not _is_cjk(t))
    cjk = [t for t in tokens if _is_cjk(t)]
    feats.update(a + b for a, b in zip(cjk, cjk[1:], strict=False))
    feats.update(cjk)
    return feats


def _is_cjk(token: str) -> bool:
    return len(token) == 1 and "\u3400" <= token <= "\u9fff"


def _cosine(a: Counter[str], b: Counter[str]) -> float:
    dot = sum(v * b[k] for k, v in a.items() if k in b)
    if not dot:
        return 0.0
    return dot / math.sqrt(sum(v * v for v in a.values()) * sum(v * v for v in b.values()))


def load_faq(path: Path) -> list[Entry]:
    """FAQ entries from YAML/JSON (a list of ``{question, answer}``), CSV (question,answer columns) or Markdown."""
    suffix = path.suffix.lower()
    name = path.name
    try:
        if suffix in (".yaml", ".yml", ".json"):
            data = yaml.safe_load(path.read_text(encoding="utf-8")) if suffix != ".json" else json.loads(
                path.read_text(encoding="utf-8")
            )
            items = data.get("faq", data.get("entries", [])) if isinstance(data, dict) else data
            return [
                Entry(str(it.get("id") or f"{name}#{i + 1}"), str(it["question"]), str(it["answer"]), name)
                for i, it in enumerate(items or [])
            ]
        if suffix == ".csv":
            with path.open(encoding="utf-8", newline="") as f:
                return [
                    Entry(str(row.get("id") or f"{name}#{i + 1}"), row["question"], row["answer"], name)
                    for i, row in enumerate(csv.DictReader(f))
                ]
        if suffix in (".md", ".txt"):
            sections = re.split(r"^#{1,6}\s+", path.read_text(encoding="utf-8"), flags=re.MULTILINE)
            out = []
            for sec in sections:
                head, _, body = sec.partition("\n")
                if head.strip() and body.strip():
                    out.append(Entry(f"{name}#{head.strip()}", head.strip(), body.strip(), name))
            return out
    except (KeyError, TypeError, AttributeError, ValueError, yaml.YAMLError) as exc:
        raise KnowledgeError(f"{path}: not a FAQ file (a list of question/answer entries): {exc}") from None
    return []


class FAQIndex:
    """FAQ entries with precomputed features."""

    def __init__(self, entries: list[Entry]) -> None:
        self.entries = entries
        self._feats = [features(e.question + " " + e.question + " " + e.answer) for e in entries]

    @classmethod
    def for_persona(cls, persona: Persona) -> FAQIndex:
        entries = [
            Entry(e.id or f"{persona.id}.yaml#faq{i + 1}", e.question, e.answer, f"{persona.id}.yaml")
            for i, e in enumerate(persona.knowledge.faq)
        ]
        for rel in persona.knowledge.paths:
            path = persona.resolve(rel)
            files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            for f in files:
                entries.extend(load_faq(f))
        return cls(entries)

    def best(self, question: str) -> tuple[Entry, float] | None:
        q = features(question)
        scored = [(_cosine(q, f), e) for f, e in zip(self._feats, self.entries, strict=True)]
        if not scored:
            return None
        score, entry = max(scored, key=lambda s: s[0])
        return entry, score


class OfflineAnswerer:
    """Answers with the best FAQ entry and its source, or declines when nothing matches well enough."""

    name = "offline"

    def __init__(self, persona: Persona, min_score: float | None = None) -> None:
        self.persona = persona
        self.index = FAQIndex.for_persona(persona)
        self.min_score = min_score if min_score is not None else (persona.knowledge.min_score or 0.25)

    async def answer(self, turn: Turn) -> None:
        turn.answered_by = self.name
        found = self.index.best(turn.question)
        zh = self.persona.language == "zh"
        if found is None or found[1] < self.min_score:
            turn.say(decline_text(self.persona))
            return
        entry, score = found
        turn.citations.append(Citation(index=1, source=entry.source, title=entry.question, chunk_id=entry.id, score=score))
        turn.say(entry.answer.strip())
        turn.say(f"\n[1] {entry.source}: {entry.question}" if not zh else f"\n[1] 来源：{entry.source}：{entry.question}")


def decline_text(persona: Persona) -> str:
    """What the persona says when its knowledge has no answer."""
    if persona.knowledge.handoff:
        return persona.knowledge.handoff
    if persona.language == "zh":
        return "抱歉，我的知识库里没有这个问题的答案。需要我为您转接人工客服吗？"
    return "I'm sorry, I don't have that in my knowledge base. Would you like me to connect you with a colleague?"
