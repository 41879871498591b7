"""The console at ``/console``: the bank's team watches and improves its digital staff.

Live sessions with their state and latency, conversation review (transcripts, sources, tool calls), the
declined and low-confidence questions grouped by similarity with "add to knowledge", and the personas' knowledge
(upload, ingest with progress, entries and their phrasings, delete). The page is ``web/console.html``; the API
is in :mod:`.routes` (every endpoint needs the ``admin`` scope), what it reads from the audit log in
:mod:`.review` and :mod:`.declined`, the files it writes in :mod:`.knowledge`, its ingest jobs in :mod:`.jobs`.
"""

from __future__ import annotations

from .routes import CONSOLE, Console, setup_console

__all__ = ["CONSOLE", "Console", "setup_console"]
