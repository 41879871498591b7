"""The audit log: an append-only JSON-lines record of every turn.

One file per day under ``<data_dir>/audit/``. The user's words are written when the turn starts, before any
answerer runs, and the answer (text, sources, tools, timings, persona version) when it ends, so a failing LLM or
a crash mid-answer still leaves what the user said on record: each record is written and the file closed (in the
operating system's hands, so a killed server keeps it) before :meth:`AuditLog.write` returns.

When a record cannot be written, :meth:`AuditLog.write` raises :class:`~fay_core.errors.AuditUnavailable` (and
logs the record, so it is not lost) rather than spooling it: a spool on the same full or read-only disk fails
the same way, and one in memory dies with the process. A bank must not answer what it cannot put on record, so
the turn is refused (HTTP 503) until the audit folder is writable again, and the log's error is the alarm.

Every text the server accepted can be recorded: the JSON lines keep Chinese and other text readable (UTF-8,
``ensure_ascii=False``), and a lone surrogate (``"\ud800"``, which UTF-8 cannot encode) is written as its JSON
escape ``\ud800`` (``backslashreplace``), so the line stays valid JSON and reads back as the same string.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from pathlib import Path
from typing import Any

from .errors import AuditUnavailable

log = logging.getLogger(__name__)


class AuditLog:
    """Appends records to ``<folder>/YYYY-MM-DD.jsonl``; safe to share between sessions and threads."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._lock = threading.Lock()

    def path_for(self, day: dt.date) -> Path:
        return self.folder / f"{day.isoformat()}.jsonl"

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` (with the time); raises :class:`AuditUnavailable` if it cannot be written."""
        now = dt.datetime.now(dt.UTC)
        line = json.dumps({"time": now.isoformat(timespec="milliseconds"), **record}, ensure_ascii=False, default=str)
        try:
            with self._lock:
                self.folder.mkdir(parents=True, exist_ok=True)
                with self.path_for(now.date()).open("a", encoding="utf-8", errors="backslashreplace") as f:
                    f.write(line + "\n")
        except OSError as exc:
            log.error("audit log %s not writable: %s; record: %s", self.folder, exc, line)
            raise AuditUnavailable(f"audit log {self.folder} is not writable ({exc}): fix its folder's permissions "
                                   "or space; turns are refused until then") from exc

    def read(self, session_id: str | None = None) -> list[dict[str, Any]]:
        """All records (of one session, if given), oldest first."""
        out = []
        for path in sorted(self.folder.glob("*.jsonl")):
            for line in path.read_text(encoding="utf-8").splitlines():
                rec = json.loads(line)
                if session_id is None or rec.get("session") == session_id:
                    out.append(rec)
        return out
