"""What a session writes about itself: the history the model reads next, and the audit log auditors read.

Everything written about a turn goes through :class:`SessionRecord`, so a later part that must see every record
(redaction, a hash chain, another store) attaches in one place. What the user said is written before anything
can fail, and first to the audit log: if that fails (:class:`~fay_core.errors.AuditUnavailable`) the turn is
not answered and the history does not hold it either. An answer is written when its turn finishes, interrupted
or not. A tool's record holds the arguments it ran with, ``customer_id`` the session's customer it ran for, and,
as ``model_arguments``, what the model asked for (which may name another customer: it is never used for that).

Every audit record passes through the session's :class:`~fay_core.redaction.Redactor` first: each string in it
(texts, tool arguments and results, error messages), recursively, has its personal data masked. The history keeps
the real values: the model reads them next, and the session's owner may fetch them.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from .brain.history import History
from .brain.turn import Turn
from .errors import AuditUnavailable
from .events import AgentTurnFinished, ErrorRaised
from .persona import Persona
from .redaction import Redactor

if TYPE_CHECKING:
    from .record_store import AuditStore


class SessionRecord:
    """The history and audit records of one session."""

    def __init__(self, session_id: str, persona: Persona, history: History, audit: AuditStore,
                 *, redactor: Redactor | None = None) -> None:
        self.session_id = session_id
        self.persona = persona
        self.history = history
        self.audit = audit
        self.redactor = redactor or Redactor.builtin()

    def _base(self, turn_id: int) -> dict[str, Any]:
        return {
            "session": self.session_id,
            "tenant": self.persona.tenant,
            "persona": self.persona.id,
            "persona_version": self.persona.version,
            "turn": turn_id,
        }

    def _write(self, record: dict[str, Any]) -> None:
        self.audit.write(self.redactor.redact_value(record))

    def user(self, turn: Turn) -> None:
        """Put what the user said into the audit log, then history (before anything else can fail).

        Raises :class:`~fay_core.errors.AuditUnavailable` if the audit log cannot be written.
        """
        self._write({**self._base(turn.id), "kind": "user", "source": turn.source, "text": turn.question})
        self.history.add("user", turn.question, turn_id=turn.id)

    def answer(self, turn: Turn, finished: AgentTurnFinished) -> None:
        """Put the answer into history (only the words heard, if interrupted) and the audit log."""
        heard = turn.heard if turn.heard is not None else finished.text
        if heard or finished.interrupted:
            self.history.add("assistant", heard, interrupted=finished.interrupted, turn_id=turn.id)
        self._write(
            {
                **self._base(turn.id),
                "kind": "answer",
                "text": finished.text,
                "heard": heard,
                "answered_by": finished.answered_by,
                "interrupted": finished.interrupted,
                "declined": finished.declined,
                "error": finished.error,
                "unsure": turn.unsure,
                "citations": [c.to_json() for c in finished.citations],
                "tools": turn.tools,
                "latency_ms": {k: round(v, 1) for k, v in turn.marks.items()},
            }
        )

    def interrupted(self, turn: Turn) -> None:
        """After barge-in: keep in history only the words the user heard, marked as interrupted."""
        msg = self.history.find("assistant", turn.id)
        if msg is not None and turn.heard is not None:
            msg.content = turn.heard
            msg.interrupted = True
            self._write({**self._base(turn.id), "kind": "interrupted", "heard": turn.heard})

    def error(self, event: ErrorRaised) -> None:
        """Audit an error reported on the session's bus (an audit log that fails has logged the record already)."""
        with contextlib.suppress(AuditUnavailable):
            self._write({**self._base(event.turn_id), "kind": "error", "source": event.source,
                         "message": event.message})

    def disclosure(self, text: str, via: str) -> None:
        """Audit that the customer was told an AI serves them (``via`` the channel that said or showed it)."""
        with contextlib.suppress(AuditUnavailable):  # the customer is told all the same; the log has logged it
            self._write({**self._base(0), "kind": "disclosure", "via": via, "text": text})

    def consent(self, recording: bool, notice: str, via: str) -> None:
        """Audit the customer's answer to the recording notice (``recording`` accepted or withdrawn)."""
        self._write({**self._base(0), "kind": "consent", "recording": recording, "notice": notice, "via": via})

    def recorded(self, path: str, seconds: float, produce_id: str) -> None:
        """Audit a recording written (its file, length, and the content id of its AIGC label)."""
        with contextlib.suppress(AuditUnavailable):
            self._write({**self._base(0), "kind": "recording", "path": path, "seconds": round(seconds, 2),
                         "produce_id": produce_id})
