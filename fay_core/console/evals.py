"""Eval runs from the console: the ``fay eval`` suites of the tenant's personas, run on the server, and their history.

The suites are the files ``<personas_dir>/evals/*.eval.yaml`` (see :mod:`fay_core.evaluation`); a tenant sees those
whose persona is one of its own. A run is the same :class:`~fay_core.evaluation.runner.Evaluator` as ``fay eval``
(the configured LLM, or the offline answerer), in a console job, case by case with progress. Each finished run is
stored as ``<data_dir>/console/evals/<tenant>/<run id>.json``: the suite, when, the answerer, the counts and the
cases exactly as ``fay eval --json`` prints them, and the ids of the sessions it used (the console leaves them out
of its conversations and declined questions: they are tests, not customers).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from pathlib import Path
from typing import Any

from ..app import Fay
from ..errors import EvalSpecError, UnknownEntry, UnknownPersona
from ..evaluation.runner import CaseResult, Evaluator
from ..evaluation.spec import Suite, load_suite
from ..session import Session
from .jobs import Job

SUFFIX = ".eval.yaml"
_RUN_ID = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}")


class ConsoleEvaluator(Evaluator):
    """An :class:`Evaluator` that notes the sessions it creates (so the console can tell them from customers')."""

    def __init__(self, fay: Fay, suite: Suite, running: set[str]) -> None:
        super().__init__(fay, suite)
        self.sessions: list[str] = []
        self.running = running  #: the sessions of the runs in progress (all of them)

    async def _session(self) -> Session:
        session = await super()._session()
        self.sessions.append(session.id)
        self.running.add(session.id)
        return session


class EvalRuns:
    """The suites a tenant may run and the runs it did."""

    def __init__(self, fay: Fay, folder: Path) -> None:
        self.fay = fay
        self.folder = folder  #: ``<data_dir>/console/evals``
        self._eval_sessions: set[str] | None = None
        self._running: set[str] = set()

    @property
    def suites_dir(self) -> Path:
        return self.fay.settings.personas_dir / "evals"

    def suites(self, tenant: str) -> list[dict[str, Any]]:
        """The tenant's suites: name, persona, cases, description (a malformed one with its error)."""
        out: list[dict[str, Any]] = []
        for path in sorted(self.suites_dir.glob(f"*{SUFFIX}")):
            name = path.name.removesuffix(SUFFIX)
            try:
                suite = load_suite(path)
                persona = self.persona_of(suite)
            except EvalSpecError as exc:
                if tenant == "default":
                    out.append({"suite": name, "error": exc.public})
                continue
            except UnknownPersona:
                continue
            if persona.tenant == tenant:
                out.append({"suite": name, "persona": persona.id, "cases": len(suite.cases),
                            "description": suite.description})
        return out

    def persona_of(self, suite: Suite) -> Any:
        from ..persona import load_persona

        file = suite.persona_file()
        return load_persona(file) if file is not None else self.fay.personas.get(suite.persona)

    def suite(self, tenant: str, name: str) -> Suite:
        """The tenant's suite ``name`` (another tenant's is unknown, exactly like one that does not exist)."""
        known = [s["suite"] for s in self.suites(tenant) if "error" not in s]
        if name not in known:
            raise UnknownEntry(f"unknown eval suite {name!r} (known: {', '.join(known) or 'none'}): suites are "
                               f"the files {self.suites_dir}/*{SUFFIX}")
        return load_suite(self.suites_dir / f"{name}{SUFFIX}")

    async def run(self, tenant: str, name: str, suite: Suite, job: Job) -> dict[str, Any]:
        """Run ``suite`` (in the event loop: its sessions live there), store the run, return its summary."""
        evaluator = ConsoleEvaluator(self.fay, suite, self._running)
        job.phase, job.done, job.total = "running", 0, len(suite.cases)

        def progress(_case: CaseResult) -> None:
            job.done += 1

        started = dt.datetime.now(dt.UTC)
        result = await evaluator.run(progress)
        run_id = f"{started.strftime('%Y%m%dT%H%M%SZ')}-{job.id[:6]}"
        record = {"id": run_id, "suite": name, "persona": result.persona.id, "tenant": tenant,
                  "started": started.isoformat(timespec="seconds"), "answerer": result.answerer,
                  "took_s": round(result.took_s, 2), "skipped": result.skipped, **result.as_json(),
                  "sessions": evaluator.sessions}
        path = self.folder / tenant / f"{run_id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(tmp, path)
        self._eval_sessions = None
        self._running.difference_update(evaluator.sessions)
        return {"run": run_id, "passed": result.passed, "failed": result.failed, "skipped": result.skipped}

    def history(self, tenant: str) -> list[dict[str, Any]]:
        """The tenant's runs, newest first, without their cases."""
        out = []
        for path in sorted((self.folder / tenant).glob("*.json"), reverse=True):
            try:
                r = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            out.append({k: r.get(k) for k in ("id", "suite", "persona", "started", "answerer", "took_s",
                                                "passed", "failed", "skipped")})
        return out

    def get(self, tenant: str, run_id: str) -> dict[str, Any]:
        path = self.folder / tenant / f"{run_id}.json"
        if not _RUN_ID.fullmatch(run_id) or not path.is_file():
            raise UnknownEntry(f"unknown eval run {run_id!r}: see GET /api/console/evals")
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return data

    def eval_sessions(self) -> set[str]:
        """The ids of every session an eval run used (all tenants: ids are unique)."""
        if self._eval_sessions is None:
            ids: set[str] = set()
            for path in self.folder.glob("*/*.json"):
                try:
                    ids.update(json.loads(path.read_text(encoding="utf-8")).get("sessions", []))
                except (OSError, json.JSONDecodeError):
                    continue
            self._eval_sessions = ids
        return self._eval_sessions | self._running
