"""Loaders: files to :class:`~fay_core.knowledge.documents.Entry` lists.

Built in: Markdown and text (split at headings, long sections at paragraphs; the heading path stays with every
chunk), PDF (per page), CSV (an FAQ when it has question and answer columns, else one entry per row), JSON and
YAML (an FAQ list ``[{question, answer, id?, questions?}]`` or ``{faq: [...]}``, else one entry per record).
Any entry can carry the questions customers ask that it answers, each indexed as its own row: ``questions``
(a list, or ``|``-separated in a CSV cell) on an FAQ entry or a record, and in Markdown a comment line in the
section, ``<!-- questions: Is the card free? | What does the card cost? -->``.
Plugins add suffixes through the ``register_knowledge_loaders`` hook: ``loader(path, source) -> list[Entry]``.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from ..errors import KnowledgeError
from .documents import Entry
from ..text import HAN

Loader = Callable[[Path, str], list[Entry]]

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
#: a section's phrasings, in a comment that renders as nothing: ``<!-- questions: Is it free? | What does it cost? -->``
_ASKED = re.compile(r"^\s*<!--\s*(?:questions|phrasings|相似问题)\s*[:：]\s*(.*?)\s*-->\s*$", re.IGNORECASE)
_QUESTION_KEYS = ("question", "q", "问题", "问")
_ANSWER_KEYS = ("answer", "a", "答案", "答")
_ALT_KEYS = ("questions", "alternates", "alternatives", "paraphrases", "相似问题")
_TITLE_KEYS = ("name", "title", "product", "id", "code", "名称", "产品")


def slug(text: str, limit: int = 48) -> str:
    """A short id-safe form of ``text`` (keeps CJK characters)."""
    s = re.sub(f"[^\\w{HAN}]+", "-", text.strip().lower()).strip("-")
    return s[:limit] or "x"


def split_long(text: str, limit: int) -> list[str]:
    """Split ``text`` at paragraph (then sentence) boundaries into pieces of at most ``limit`` characters."""
    if len(text) <= limit:
        return [text]
    parts: list[str] = []
    current = ""
    units: list[str] = []
    for para in re.split(r"\n\s*\n", text):
        if len(para) <= limit:
            units.append(para)
        else:
            units.extend(s for s in re.split(r"(?<=[.!?。！？；;])\s*", para) if s)
    for unit in units:
        while len(unit) > limit:  # a single run-on sentence: cut hard
            if current:
                parts.append(current)
                current = ""
            parts.append(unit[:limit])
            unit = unit[limit:]
        if current and len(current) + len(unit) + 2 > limit:
            parts.append(current)
            current = unit
        else:
            current = f"{current}\n\n{unit}" if current else unit
    if current.strip():
        parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def load_markdown(path: Path, source: str, chunk_chars: int = 1200) -> list[Entry]:
    """Sections under their heading path (``Product > Fees``); text before the first heading is its own chunk."""
    text = _read(path)
    title = path.stem
    stack: list[str] = []
    sections: list[tuple[list[str], list[str]]] = [([], [])]
    in_code = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
        m = None if in_code else _HEADING.match(line)
        if m:
            level = len(m.group(1))
            stack = stack[: level - 1] + [m.group(2).strip()]
            sections.append((list(stack), []))
        else:
            sections[-1][1].append(line)
    out: list[Entry] = []
    seen: dict[str, int] = {}
    for heads, lines in sections:
        asked: list[str] = []
        kept = []
        for line in lines:
            m = _ASKED.match(line)
            if m:
                asked.extend(phrasings(m.group(1)))
            else:
                kept.append(line)
        body = "\n".join(kept).strip()
        if not body:
            continue
        section = " > ".join(heads)
        base = slug(section or title)
        for i, piece in enumerate(split_long(body, chunk_chars)):
            local = base if i == 0 else f"{base}-{i + 1}"
            n = seen.get(local, 0)
            seen[local] = n + 1
            if n:
                local = f"{local}-{n + 1}"
            out.append(Entry(id=f"{source}#{local}", title=heads[-1] if heads else title, text=piece,
                             kind="chunk", source=source, section=section, questions=tuple(asked) if i == 0 else ()))
    return out


def load_text(path: Path, source: str, chunk_chars: int = 1200) -> list[Entry]:
    """Plain text in paragraph-aligned chunks."""
    pieces = split_long(_read(path).strip(), chunk_chars)
    return [Entry(id=f"{source}#{i + 1}", title=path.stem, text=p, kind="chunk", source=source)
            for i, p in enumerate(pieces)]


def load_pdf(path: Path, source: str, chunk_chars: int = 1200) -> list[Entry]:
    """Page by page (``page`` is 1-based); long pages split at paragraphs."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(str(path))
        meta = reader.metadata
        title = str((meta.get("/Title") if meta is not None else None) or path.stem)
        pages = [(i + 1, page.extract_text() or "") for i, page in enumerate(reader.pages)]
    except (PdfReadError, ValueError, OSError) as exc:
        raise KnowledgeError(f"{path}: cannot read this PDF ({exc})") from None
    out: list[Entry] = []
    for number, text in pages:
        for j, piece in enumerate(split_long(text.strip(), chunk_chars)):
            out.append(Entry(id=f"{source}#p{number}-{j + 1}", title=title, text=piece, kind="chunk",
                             source=source, section=f"{title}, page {number}", page=number))
    return out


def load_csv(path: Path, source: str, chunk_chars: int = 1200) -> list[Entry]:
    """An FAQ (question/answer columns, optional id and ``questions`` separated by ``|``) or one entry per row."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            rows = list(csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise KnowledgeError(f"{path}: not a UTF-8 CSV file ({exc})") from None
    return records_to_entries(rows, path, source)


def load_structured(path: Path, source: str, chunk_chars: int = 1200) -> list[Entry]:
    """JSON or YAML: an FAQ list, ``{faq: [...]}``/``{entries: [...]}``, or a list of records."""
    raw = _read(path)
    try:
        data = json.loads(raw) if path.suffix.lower() == ".json" else yaml.safe_load(raw)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise KnowledgeError(f"{path}: not valid {path.suffix.lstrip('.').upper()} ({exc})") from None
    if isinstance(data, dict):
        key = next((k for k in ("faq", "entries", "products", "items", "records") if k in data), None)
        if key is None:
            raise KnowledgeError(f"{path}: expected a list of entries or a mapping with 'faq:' or 'entries:'")
        data = data[key]
    if not isinstance(data, list):
        raise KnowledgeError(f"{path}: expected a list of entries, got {type(data).__name__}")
    return records_to_entries(data, path, source)


def records_to_entries(records: Iterable[Any], path: Path, source: str) -> list[Entry]:
    """FAQ entries when records have a question and an answer, else one chunk per record."""
    out: list[Entry] = []
    ids: set[str] = set()
    for i, rec in enumerate(records):
        where = f"{path}: entry {i + 1}"
        if not isinstance(rec, dict):
            raise KnowledgeError(f"{where}: expected a mapping of fields, got {type(rec).__name__}")
        keys = {str(k).strip().lower(): k for k in rec}
        q_key = next((keys[k] for k in _QUESTION_KEYS if k in keys), None)
        a_key = next((keys[k] for k in _ANSWER_KEYS if k in keys), None)
        local = str(rec.get(keys.get("id", ""), "") or "").strip()
        alt_key = next((keys[k] for k in _ALT_KEYS if k in keys), None)
        questions = phrasings(rec.get(alt_key) if alt_key else None)
        if q_key is not None and a_key is not None:
            question, answer = str(rec[q_key] or "").strip(), str(rec[a_key] or "").strip()
            if not question or not answer:
                raise KnowledgeError(f"{where}: an FAQ entry needs a non-empty question and answer")
            entry = Entry(id=f"{source}#{local or i + 1}", title=question, text=answer, kind="faq",
                          source=source, questions=questions)
        else:
            fields = {str(k): v for k, v in rec.items() if v not in (None, "") and k != alt_key}
            t_key = next((keys[k] for k in _TITLE_KEYS if k in keys), None)
            title = str(rec[t_key]) if t_key else f"{path.stem} {i + 1}"
            body = "\n".join(f"{k}: {_flat(v)}" for k, v in fields.items())
            entry = Entry(id=f"{source}#{local or slug(title)}", title=title, text=body, kind="chunk",
                          source=source, section=title, questions=questions)
        if entry.id in ids:
            raise KnowledgeError(f"{where}: duplicate id {entry.id.split('#', 1)[1]!r}")
        ids.add(entry.id)
        out.append(entry)
    return out


def phrasings(value: Any) -> tuple[str, ...]:
    """An entry's extra phrasings: a list, or one string separated by ``|`` (a CSV cell, a Markdown comment)."""
    items = value.split("|") if isinstance(value, str) else value if isinstance(value, list) else []
    return tuple(dict.fromkeys(str(a).strip() for a in items if str(a).strip()))


def _flat(value: Any) -> str:
    if isinstance(value, list):
        return "; ".join(_flat(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_flat(v)}" for k, v in value.items())
    return str(value)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise KnowledgeError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


BUILTIN_LOADERS: dict[str, Callable[..., list[Entry]]] = {
    ".md": load_markdown,
    ".markdown": load_markdown,
    ".txt": load_text,
    ".pdf": load_pdf,
    ".csv": load_csv,
    ".json": load_structured,
    ".yaml": load_structured,
    ".yml": load_structured,
}
