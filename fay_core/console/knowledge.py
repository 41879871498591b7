"""A persona's knowledge files as the console edits them: FAQ entries added, documents uploaded and deleted.

The console writes only into the persona's **knowledge folder**: the first folder of its ``knowledge.paths``
(a persona without one is :class:`~fay_core.errors.NotEditable`). There it keeps

- ``console-faq.yaml``: the FAQ entries added from the console (``faq:`` entries with ``id``, ``question``,
  ``answer`` and ``questions``, the format of the shipped ``faq.yaml``), written atomically;
- ``uploads/``: the documents uploaded (Markdown, PDF, CSV, text), each under its own file name.

Both are ordinary knowledge files: they are ingested with the rest of the folder (at start, by ``fay kb ingest``,
and by the console's jobs), and they stay when the server restarts. A deleted document is moved to
``<data_dir>/console/trash/`` (with the time in its name), not destroyed: whoever deleted the wrong file can put it
back. Entries the bank wrote by hand are not edited by the console (their comments and layout are the bank's):
it deletes only the entries it added, and whole documents.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import yaml

from ..errors import InvalidBody, KnowledgeError, NotEditable, UnknownEntry
from ..knowledge import KnowledgeBase, persona_collections
from ..persona import Persona

CONSOLE_FAQ = "console-faq.yaml"
UPLOADS = "uploads"
#: what may be uploaded (the built-in loaders of these suffixes, see :mod:`fay_core.knowledge.loaders`)
UPLOAD_SUFFIXES = (".md", ".markdown", ".pdf", ".csv", ".txt")
#: what an uploaded file's name may hold (anything else becomes ``-``)
_NAME = re.compile(r"[^A-Za-z0-9._-]+")
#: file edits of this process, one at a time (two staff members adding entries at once must not lose one)
_EDITS = threading.Lock()
_HEADER = ("# FAQ entries added from the Fay console (/console). Same format as faq.yaml; edit freely, or delete\n"
           "# entries in the console. Re-ingested with the rest of this folder.\n")


def folder_of(persona: Persona) -> Path:
    """The persona's knowledge folder (the first folder of ``knowledge.paths``), or :class:`NotEditable`."""
    for raw in persona.knowledge.paths:
        path = persona.resolve(raw)
        if path.is_dir():
            return path
    raise NotEditable(f"persona {persona.id!r} has no knowledge folder to write to: add one to its "
                      "knowledge.paths (e.g. paths: [../knowledge/my_bank]) and restart")


def collection_of(persona: Persona) -> str:
    """The collection the persona's files are ingested into (its first)."""
    return persona_collections(persona)[0]


def source_prefix(folder: Path) -> str:
    """How entry ids of files in ``folder`` begin: ingestion names them after the folder (``en/faq.yaml#...``)."""
    return folder.name + "/"


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_faq(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    faq = data.get("faq") if isinstance(data, dict) else None
    if not isinstance(faq, list):
        raise NotEditable(f"{path} is not an FAQ file ('faq:' with a list of entries): fix or move it")
    return faq


def _write_faq(path: Path, faq: list[dict[str, Any]]) -> None:
    body = yaml.safe_dump({"faq": faq}, allow_unicode=True, sort_keys=False, width=120)
    _atomic_write(path, (_HEADER + body).encode("utf-8"))


def add_faq(folder: Path, question: str, answer: str, questions: list[str]) -> str:
    """Append an FAQ entry to the folder's ``console-faq.yaml``; returns its entry id (as ingestion names it)."""
    with _EDITS:
        return _add_faq(folder, question, answer, questions)


def _add_faq(folder: Path, question: str, answer: str, questions: list[str]) -> str:
    path = folder / CONSOLE_FAQ
    faq = _read_faq(path)
    taken = {str(e.get("id")) for e in faq if isinstance(e, dict)}
    n = len(faq) + 1
    while f"console-{n:03d}" in taken:
        n += 1
    local = f"console-{n:03d}"
    others = [q for q in dict.fromkeys(q.strip() for q in questions) if q and q != question]
    entry: dict[str, Any] = {"id": local, "question": question, "answer": answer}
    if others:
        entry["questions"] = others
    _write_faq(path, [*faq, entry])
    return f"{source_prefix(folder)}{CONSOLE_FAQ}#{local}"


def remove_faq(folder: Path, entry_id: str) -> None:
    """Delete an entry the console added; another file's entry is :class:`NotEditable`, an unknown one
    :class:`UnknownEntry`."""
    prefix = f"{source_prefix(folder)}{CONSOLE_FAQ}#"
    if not entry_id.startswith(prefix):
        raise NotEditable(f"entry {entry_id!r} is in a file the bank wrote ({entry_id.split('#', 1)[0]}): edit that "
                          "file, or delete the whole document")
    local = entry_id[len(prefix):]
    path = folder / CONSOLE_FAQ
    with _EDITS:
        faq = _read_faq(path)
        kept = [e for e in faq if not (isinstance(e, dict) and str(e.get("id")) == local)]
        if len(kept) == len(faq):
            raise UnknownEntry(f"no entry {entry_id!r} in {CONSOLE_FAQ}")
        _write_faq(path, kept)


def upload_name(name: str) -> str:
    """A safe file name for an upload (its base name, percent-escapes decoded, odd characters as ``-``), or
    :class:`InvalidBody`."""
    base = _NAME.sub("-", Path(unquote(name).replace("\\", "/")).name).strip(".-")
    suffix = Path(base).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise InvalidBody(f"cannot ingest {name!r}: upload a Markdown, PDF, CSV or text file "
                          f"({', '.join(UPLOAD_SUFFIXES)})")
    if not base or base == suffix or len(base) > 120:
        raise InvalidBody(f"file name {name!r} is empty or too long: rename the file (1-120 characters)")
    return base


def save_upload(kb: KnowledgeBase, folder: Path, name: str, data: bytes) -> Path:
    """Write an uploaded document to ``uploads/`` (replacing one of the same name); returns its path.

    It is loaded first, from a temporary copy, with the knowledge base's own loader: a file that does not load (a
    damaged PDF, a CSV that is not UTF-8) is refused with the loader's reason and never reaches the folder, where
    it would stop every later ingest of the persona's knowledge.
    """
    if not data.strip():
        raise InvalidBody(f"{name!r} is empty: upload a file with content")
    safe = upload_name(name)
    with tempfile.TemporaryDirectory(prefix="fay-upload-") as tmp:
        trial = Path(tmp) / safe
        trial.write_bytes(data)
        try:
            loaded = kb.load(trial, safe)
        except KnowledgeError as exc:
            raise InvalidBody(f"{name!r} cannot be ingested: {str(exc).replace(str(trial), safe)}") from None
    if not loaded:
        raise InvalidBody(f"{name!r} holds no text to ingest (a scanned PDF needs OCR first)")
    path = folder / UPLOADS / safe
    with _EDITS:
        _atomic_write(path, data)
    return path


def document_path(folder: Path, relative: str) -> Path:
    """The file ``relative`` names inside the folder, or :class:`UnknownEntry` (also for paths leaving it)."""
    path = (folder / relative).resolve()
    if not relative or not path.is_relative_to(folder.resolve()) or not path.is_file():
        raise UnknownEntry(f"no document {relative!r} in the persona's knowledge folder")
    return path


def trash_document(path: Path, trash: Path) -> Path:
    """Move a deleted document to ``trash`` (the time in its name); returns where it went."""
    trash.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = trash / f"{stamp}-{path.name}"
    with _EDITS:
        shutil.move(str(path), target)
    return target


def documents(kb: KnowledgeBase, collection: str, folder: Path) -> list[dict[str, Any]]:
    """The files ingested into ``collection`` from ``folder``: path (relative), entries, whether uploaded."""
    root = folder.resolve()
    counts: dict[str, int] = {}
    for path, _entry in kb.entries_of(collection):
        counts[path] = counts.get(path, 0) + 1
    out = []
    for path, n in sorted(counts.items()):
        p = Path(path)
        if not p.is_absolute() or not p.is_relative_to(root):
            continue  # an inline FAQ or an API document: not a file of the folder
        rel = p.relative_to(root).as_posix()
        out.append({"path": rel, "entries": n, "uploaded": rel.startswith(UPLOADS + "/"),
                    "console": rel == CONSOLE_FAQ})
    return out


def entries(kb: KnowledgeBase, collection: str, folder: Path | None) -> list[dict[str, Any]]:
    """Every entry of ``collection`` with its phrasings, and whether the console may delete it."""
    prefix = f"{source_prefix(folder)}{CONSOLE_FAQ}#" if folder is not None else None
    out = []
    for _path, e in kb.entries_of(collection):
        out.append({"id": e.id, "kind": e.kind, "title": e.title, "questions": list(e.questions),
                    "text": e.text, "source": e.source, "section": e.section, "page": e.page,
                    "deletable": prefix is not None and e.id.startswith(prefix)})
    return out
