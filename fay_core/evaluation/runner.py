"""Running a suite through the product's own path: sessions built by the assembly, answers from ``Session.ask``.

Every run of every case gets a fresh session of the suite's persona (:meth:`fay_core.app.Fay.create_session`, or
the assembly directly for a persona file outside the personas folder), answered as a customer's would be: with the
LLM if one is configured, else the offline answerer. What a turn reports is read from its events: the answer and
its citations (:class:`~fay_core.events.AgentTurnFinished`), the tools it called
(:class:`~fay_core.events.AgentToolCalled`, :class:`~fay_core.events.AgentToolReturned`), and its latency, from the
question to the turn's end as the caller of :meth:`~fay_core.session.Session.ask` sees it.

Cases that need an LLM (a simulated customer, a judge) are skipped, with the reason, when none is configured.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..app import Fay
from ..brain.llm import LLMConfig
from ..events import AgentToolCalled, AgentToolReturned, AgentTurnFinished, ErrorRaised
from ..persona import Persona, load_persona
from ..session import Session
from .checks import Transcript, TurnResult, check
from .judge import Judge, SimulatedCustomer
from .spec import Case, Expectations, Suite


@dataclass
class RunResult:
    """One run of a case: its turns, and what went wrong (nothing: it passed)."""

    turns: list[TurnResult] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass
class CaseResult:
    """Every run of one case. It passes only if every run passed; ``skipped`` says why it did not run."""

    case: Case
    runs: list[RunResult] = field(default_factory=list)
    skipped: str = ""

    @property
    def passed(self) -> bool | None:
        """``True``/``False``, or ``None`` for a skipped case."""
        if self.skipped:
            return None
        return all(r.passed for r in self.runs)

    @property
    def shown(self) -> RunResult:
        """The run the report shows: the first that failed, else the last."""
        return next((r for r in self.runs if not r.passed), self.runs[-1] if self.runs else RunResult())

    @property
    def failures(self) -> list[str]:
        """Every run's failures (``run 2/3: ...`` when the case ran more than once), or why it was skipped."""
        if self.skipped:
            return [f"skipped: {self.skipped}"]
        if len(self.runs) == 1:
            return list(self.runs[0].failures)
        return [f"run {i}/{len(self.runs)}: {f}" for i, r in enumerate(self.runs, 1) for f in r.failures]

    def as_json(self) -> dict[str, object]:
        """``{"id", "passed", "answer", "sources", "declined", "latency_ms", "failures"}`` (of :attr:`shown`; the
        latency is the slowest turn of all runs)."""
        last = self.shown.turns[-1] if self.shown.turns else None
        latencies = [t.latency_ms for r in self.runs for t in r.turns]
        return {
            "id": self.case.id,
            "passed": self.passed,
            "answer": last.answer if last else "",
            "sources": last.sources if last else [],
            "declined": last.declined if last else False,
            "latency_ms": round(max(latencies), 1) if latencies else None,
            "failures": self.failures,
        }


@dataclass
class SuiteResult:
    """A suite's results, in case order."""

    suite: Suite
    persona: Persona
    answerer: str  #: ``llm <model>`` or ``offline``
    cases: list[CaseResult] = field(default_factory=list)
    ready_s: float = 0.0  #: how long the persona's knowledge took to get ready (before the first case)
    took_s: float = 0.0

    @property
    def passed(self) -> int:
        return sum(1 for c in self.cases if c.passed is True)

    @property
    def failed(self) -> int:
        return sum(1 for c in self.cases if c.passed is False)

    @property
    def skipped(self) -> int:
        return sum(1 for c in self.cases if c.passed is None)

    def as_json(self) -> dict[str, object]:
        """``{"cases": [...], "passed": n, "failed": n}``."""
        return {"cases": [c.as_json() for c in self.cases], "passed": self.passed, "failed": self.failed}


class Evaluator:
    """Runs a suite's cases against a started :class:`~fay_core.app.Fay`, one case (and one run) at a time."""

    def __init__(self, fay: Fay, suite: Suite) -> None:
        self.fay = fay
        self.suite = suite
        file = suite.persona_file()
        self._file = file
        self.persona = load_persona(file) if file is not None else fay.personas.get(suite.persona)
        self.llm = LLMConfig.resolve(fay.settings.llm, self.persona)
        self.judge = Judge(self.llm, self.persona) if self.llm is not None else None

    @property
    def answerer(self) -> str:
        return f"llm {self.llm.model}" if self.llm is not None else "offline"

    def runs_of(self, case: Case) -> int:
        return case.runs or self.suite.runs

    async def run(self, progress: Callable[[CaseResult], None] | None = None) -> SuiteResult:
        """Run every case; ``progress`` is called after each one."""
        started = time.monotonic()
        result = SuiteResult(self.suite, self.persona, self.answerer)
        result.ready_s = await self.prepare()
        for case in self.suite.cases:
            done = await self.run_case(case)
            result.cases.append(done)
            if progress is not None:
                progress(done)
        result.took_s = time.monotonic() - started
        return result

    async def prepare(self) -> float:
        """Get the persona's knowledge ready (ingested if needed, models loaded), so that the first case's latency
        is an answer's, not an ingest's. Returns the seconds it took."""
        started = time.monotonic()
        session = await self._session()
        try:
            retriever = session.agent.retriever
            if retriever.enabled:
                await retriever.retrieve(self.persona.name)
        finally:
            await self._close(session)
        return time.monotonic() - started

    async def run_case(self, case: Case) -> CaseResult:
        """Every run of ``case`` (or none, with the reason, when it needs an LLM and none is configured)."""
        result = CaseResult(case)
        need = case.needs_llm
        if need and self.judge is None:
            result.skipped = (f"{need} needs an LLM, and none is configured (set llm.model, e.g. "
                              "FAY_LLM__MODEL=openai/gpt-4o-mini)")
            return result
        for _ in range(self.runs_of(case)):
            result.runs.append(await self.run_once(case))
        return result

    async def run_once(self, case: Case) -> RunResult:
        """One run of ``case`` in a fresh session."""
        run = RunResult()
        session = await self._session()
        try:
            if case.customer is not None:
                session.customer_id = case.customer
            if case.ask is not None:
                run.turns.append(await self.turn(session, case.ask))
                run.failures += await self._check(case, run.turns)
            elif case.turns is not None:
                for i, step in enumerate(case.turns, 1):
                    turn = await self.turn(session, step.ask)
                    run.turns.append(turn)
                    prefix = f"turn {i}: " if len(case.turns) > 1 else ""
                    run.failures += [prefix + f for f in await self._check(step, [turn])]
            elif case.simulate is not None:
                assert self.judge is not None  # run_case skips simulations without an LLM
                customer = SimulatedCustomer(self.judge.config, self.persona, case.simulate)
                failure = ""
                for _ in range(case.simulate.max_turns):
                    try:
                        message = await customer.next_message(run.turns)
                    except Exception as exc:  # the customer's LLM failed: the case cannot go on
                        failure = f"the simulated customer's LLM failed: {exc}"
                        break
                    if message is None:
                        break
                    run.turns.append(await self.turn(session, message))
                if failure:
                    run.failures.append(failure)
                elif not run.turns:
                    run.failures.append("the simulated customer said nothing (its first reply was DONE)")
                else:
                    run.failures += await self._check(case, run.turns)
        finally:
            await self._close(session)
        return run

    async def turn(self, session: Session, text: str) -> TurnResult:
        """Ask ``text`` in ``session`` and collect what the turn reports."""
        tools: dict[str, tuple[str, str]] = {}  # call id -> (name, error)
        order: list[str] = []
        errors: list[str] = []
        finished: AgentTurnFinished | None = None
        started = time.monotonic()
        async for event in session.ask(text):
            if isinstance(event, AgentToolCalled):
                key = event.call_id or f"#{len(order)}"
                order.append(key)
                tools[key] = (event.name, "")
            elif isinstance(event, AgentToolReturned):
                key = event.call_id if event.call_id in tools else next(
                    (k for k in reversed(order) if tools[k][0] == event.name), event.call_id)
                tools[key] = (event.name, event.error)
            elif isinstance(event, ErrorRaised):
                errors.append(f"{event.source}: {event.message}")
            elif isinstance(event, AgentTurnFinished):
                finished = event
        latency = (time.monotonic() - started) * 1000
        assert finished is not None  # Session.ask always ends on the turn's end
        if finished.interrupted:
            errors.append(f"the turn was interrupted ({finished.error or 'no reason given'})")
        return TurnResult(
            question=text,
            answer=finished.text,
            citations=list(finished.citations),
            declined=finished.declined,
            latency_ms=latency,
            tools=[tools[k] for k in order],
            answered_by=finished.answered_by,
            errors=errors,
        )

    async def _check(self, expect: Expectations, turns: list[TurnResult]) -> list[str]:
        failures = check(expect, turns)
        if expect.judge:
            assert self.judge is not None  # run_case skips judged cases without an LLM
            failure = await self.judge.verdict(expect.judge, Transcript(turns))
            if failure:
                failures.append(failure)
        return failures

    async def _session(self) -> Session:
        if self._file is None:
            return await self.fay.create_session(self.persona.id)
        return await self.fay.assembly.build(self.persona)  # a persona file from outside the personas folder

    async def _close(self, session: Session) -> None:
        if session.id in self.fay.sessions:
            await self.fay.close_session(session.id, "eval case done")
        else:
            await session.close("eval case done")

