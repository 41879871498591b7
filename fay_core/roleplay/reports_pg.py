"""Role-play reports in PostgreSQL (``fay_reports``): every node's reports in one table a bank can query.

The same reports as :class:`~fay_core.roleplay.reports.ReportStore` keeps in files, one row per ``(tenant,
session_id)`` with the report as ``jsonb``. A save is one upsert that merges the stored overrides with the
report's own in SQL, so a trainer's override made through one node survives the report being rewritten by the
node that owns the session (the files' store does the same merge under a process lock).

Query, e.g.: ``SELECT report->>'trainee', (report->'scorecard'->>'total')::float FROM fay_reports WHERE tenant =
'default' ORDER BY updated``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import UnknownReport
from ..pg import Database, jsonb_safe
from .reports import SESSION_ID, ReportStore

_UPSERT = """
INSERT INTO fay_reports (tenant, session_id, report) VALUES (%s, %s, %s::jsonb)
ON CONFLICT (tenant, session_id) DO UPDATE SET
    report = EXCLUDED.report || jsonb_build_object('overrides',
        coalesce(fay_reports.report->'overrides', '{}'::jsonb) || coalesce(EXCLUDED.report->'overrides', '{}'::jsonb)),
    updated = now()
"""


class PgReportStore(ReportStore):
    """Reports in the ``fay_reports`` table of ``db`` (see the module docstring)."""

    def __init__(self, db: Database) -> None:
        super().__init__(Path("."))
        self.db = db

    def _check(self, session_id: str) -> None:
        if not SESSION_ID.fullmatch(session_id):
            raise UnknownReport(f"no report for session {session_id[:140]!r}: not a session id")

    def load(self, tenant: str, session_id: str) -> dict[str, Any]:
        """The stored report, or :class:`~fay_core.errors.UnknownReport` (another tenant's reads as unknown)."""
        self._check(session_id)

        def fetch(cur: Any) -> Any:
            cur.execute("SELECT report FROM fay_reports WHERE tenant = %s AND session_id = %s", (tenant, session_id))
            return cur.fetchone()

        row = self.db.run(fetch)
        if row is None:
            raise UnknownReport(f"no report for session {session_id!r}: reports are written when a role-play "
                                "scenario ends (a persona whose scenario has steps)")
        data = row[0]
        if not isinstance(data, dict):
            raise UnknownReport(f"the report of session {session_id!r} is damaged (not a JSON object)")
        return data

    def _save(self, report: dict[str, Any]) -> Path:
        self._check(report["session_id"])
        body = json.dumps(jsonb_safe(report), ensure_ascii=False, default=str)
        self.db.run(lambda cur: cur.execute(_UPSERT, (report["tenant"], report["session_id"], body)))
        return Path(f"{self.db.where}#fay_reports/{report['tenant']}/{report['session_id']}")

    def of_tenant(self, tenant: str) -> list[dict[str, Any]]:
        """Every report of ``tenant``, oldest first."""
        def fetch(cur: Any) -> list[Any]:
            cur.execute("SELECT report FROM fay_reports WHERE tenant = %s ORDER BY updated, session_id", (tenant,))
            return list(cur.fetchall())

        return [row[0] for row in self.db.run(fetch) if isinstance(row[0], dict)]
