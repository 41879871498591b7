"""Where a runtime keeps its record: the audit chain and the role-play reports, in files or in PostgreSQL.

:func:`open_records` reads ``audit.url``: unset, the JSON-lines audit files under ``<data_dir>/audit``
(:class:`~fay_core.audit.AuditLog`) and the report files under ``<data_dir>/reports``
(:class:`~fay_core.roleplay.reports.ReportStore`), exactly as a single node always kept them; a ``postgresql://``
URL, the same records in one database shared by every node (:mod:`fay_core.pg`). Both audit backends have the
interface :class:`AuditStore` names, and both report stores that of ``ReportStore``, so sessions, the server and
``fay audit`` do not care which they hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from .audit import AuditLog
from .audit_chain import Verified
from .pg import Database
from .roleplay.reports import ReportStore
from .settings import Settings


class AuditStore(Protocol):
    """What the runtime asks of an audit log (files: :class:`~fay_core.audit.AuditLog`; PostgreSQL:
    :class:`~fay_core.audit_pg.PgAuditLog`)."""

    def write(self, record: dict[str, Any]) -> None:
        """Chain ``record``, durable before it returns; :class:`~fay_core.errors.AuditUnavailable` if it cannot."""

    def read(self, session_id: str | None = None) -> list[dict[str, Any]]:
        """All records (of one session), oldest first."""

    def sealed(self) -> list[bytes]:
        """Every record as its sealed line (JSON, hashes verifiable), oldest first."""

    def apply_retention(self, daily: bool = False) -> list[str]:
        """Delete what is older than ``audit.retention_days`` (recorded in the chain first); never raises."""

    def verify(self) -> Verified:
        """Check the whole chain; the first break is ``problem``."""


@dataclass
class Records:
    """A runtime's audit log and report store, and the database behind them if there is one."""

    audit: AuditStore
    reports: ReportStore
    db: Database | None = None

    @property
    def where(self) -> str:
        """Where the record is kept, for logs (a database URL without its password, or the audit folder)."""
        if self.db is not None:
            return self.db.where
        assert isinstance(self.audit, AuditLog)
        return str(self.audit.folder)

    def close(self) -> None:
        if self.db is not None:
            self.db.close()


def open_records(settings: Settings) -> Records:
    """The record of ``settings``: PostgreSQL if ``audit.url`` is set, else the files under ``data_dir``.

    Nothing is connected yet: the first write opens the database (and creates its tables), so a database that
    is down at start shows as refused turns (503) rather than a server that does not start.
    """
    if settings.audit.url:
        from .audit_pg import PgAuditLog
        from .roleplay.reports_pg import PgReportStore

        db = Database(settings.audit.url)
        return Records(PgAuditLog(db, settings.audit), PgReportStore(db), db)
    return Records(AuditLog(settings.data_dir / "audit", settings.audit), ReportStore(settings.data_dir / "reports"))
