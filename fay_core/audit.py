"""The audit log: an append-only JSON-lines record of every turn.

One file per day under ``<data_dir>/audit/``. The user's words are written when the turn starts, before any
answerer runs, and the answer (text, sources, tools, timings, persona version) when it ends, so a failing LLM or
a crash mid-answer still leaves what the user said on record.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class AuditLog:
    """Appends records to ``<folder>/YYYY-MM-DD.jsonl``; safe to share between sessions and threads."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._lock = threading.Lock()

    def path_for(self, day: dt.date) -> Path:
        return self.folder / f"{day.isoformat()}.jsonl"

    def write(self, record: dict[str, Any]) -> None:
        now = dt.datetime.now(dt.UTC)
        line = json.dumps({"time": now.isoformat(timespec="milliseconds"), **record}, ensure_ascii=False, default=str)
        try:
            with self._lock:
                self.folder.mkdir(parents=True, exist_ok=True)
                with self.path_for(now.date()).open("a", encoding="utf-8") as f:
                    f.write(line + "\n")
        except OSError as exc:  # the audit trail failing must be loud, but must not drop the conversation
            log.error("audit log %s not writable: %s; record: %s", self.folder, exc, line)

    def read(self, session_id: str | None = None) -> list[dict[str, Any]]:
        """All records (of one session, if given), oldest first."""
        out = []
        for path in sorted(self.folder.glob("*.jsonl")):
            for line in path.read_text(encoding="utf-8").splitlines():
                rec = json.loads(line)
                if session_id is None or rec.get("session") == session_id:
                    out.append(rec)
        return out
