"""The console's ingest jobs: a change to a persona's knowledge files, then its re-ingestion, with progress.

A job runs in a worker thread (the knowledge base serialises ingests), reports its phase (``writing``,
``ingesting``, ``done`` or ``failed``) and, while it embeds, the rows embedded out of those to embed (rows already
embedded before are not counted again: a re-ingest after one new entry embeds a handful). An eval run
(:mod:`.evals`) is a job too, run in the event loop, counting its cases. The last
:data:`KEEP` jobs are kept in memory for clients to poll (``GET /api/console/jobs/{id}``); a tenant sees only its
own. The server waits for running jobs when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import FayError, UnknownJob

log = logging.getLogger(__name__)

#: how many finished jobs are kept for polling
KEEP = 100


@dataclass
class Job:
    """One change and re-ingestion of a persona's knowledge."""

    id: str
    tenant: str
    kind: str  #: ``add-entry``, ``upload``, ``ingest``, ``delete-document``, ``delete-entry``, ``eval``
    persona: str
    title: str
    state: str = "running"  #: ``running``, ``done``, ``failed``
    phase: str = "writing"  #: ``writing``, ``ingesting`` (``running``: an eval's cases), ``done``, ``failed``
    done: int = 0
    total: int = 0
    error: str = ""
    result: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    finished: float | None = None

    def progress(self, done: int, total: int) -> None:
        """The ingest's embedding progress (called from the worker thread)."""
        self.phase, self.done, self.total = "ingesting", done, total

    def as_json(self) -> dict[str, Any]:
        fraction = 1.0 if self.state == "done" else (self.done / self.total if self.total else 0.0)
        return {"id": self.id, "kind": self.kind, "persona": self.persona, "title": self.title, "state": self.state,
                "phase": self.phase, "done": self.done, "total": self.total, "fraction": round(fraction, 3),
                "error": self.error, "result": self.result, "started": self.started, "finished": self.finished}


class Jobs:
    """The running and recent jobs of a server."""

    def __init__(self) -> None:
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, tenant: str, kind: str, persona: str, title: str,
              work: Callable[[Job], dict[str, Any]] | Callable[[Job], Awaitable[dict[str, Any]]],
              *, in_loop: bool = False) -> Job:
        """Run ``work(job)`` in a worker thread (``in_loop``: await it in the event loop instead); its return value
        becomes the job's ``result``."""
        job = Job(secrets.token_hex(8), tenant, kind, persona, title)
        self._jobs[job.id] = job
        while len(self._jobs) > KEEP:
            oldest = next(iter(self._jobs))
            if self._jobs[oldest].state == "running":
                break
            self._jobs.pop(oldest)
        task = asyncio.get_running_loop().create_task(self._run(job, work, in_loop), name=f"console.job.{job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def _run(self, job: Job, work: Callable[[Job], Any], in_loop: bool) -> None:
        try:
            job.result = await work(job) if in_loop else await asyncio.to_thread(work, job)
            job.state = job.phase = "done"
        except Exception as exc:
            job.state = job.phase = "failed"
            job.error = exc.public if isinstance(exc, FayError) else f"{type(exc).__name__}: {exc}"
            log.warning("console job %s (%s, persona %s) failed: %s", job.id, job.kind, job.persona, job.error)
        finally:
            job.finished = time.time()

    def get(self, job_id: str, tenant: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None or job.tenant != tenant:
            raise UnknownJob(f"unknown job {job_id!r}: jobs are kept for a while after they end (the last {KEEP})")
        return job

    def of(self, tenant: str) -> list[Job]:
        """The tenant's jobs, newest first."""
        return [j for j in reversed(self._jobs.values()) if j.tenant == tenant]

    async def wait(self) -> None:
        """Wait for the running jobs (they finish their file writes and ingests; a worker thread cannot be
        interrupted)."""
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._tasks, return_exceptions=True)
