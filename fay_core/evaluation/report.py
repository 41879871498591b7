"""The report of a suite: a pass/fail table (rich), a progress bar while it runs, and the JSON form."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from .runner import CaseResult, SuiteResult

_RESULT = {True: Text("PASS", style="bold green"), False: Text("FAIL", style="bold red"),
           None: Text("SKIP", style="yellow")}


@contextmanager
def progress_bar(total: int, stream: IO[str]) -> Iterator[Callable[[CaseResult], None]]:
    """A progress bar on ``stream`` (drawn only on a terminal) and the callback that advances it by a case."""
    console = Console(file=stream)
    with Progress(TextColumn("[bold]fay eval"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                  TimeElapsedColumn(), console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("", total=total)
        failed = 0

        def advance(case: CaseResult) -> None:
            nonlocal failed
            failed += case.passed is False
            note = f"[red]{failed} failed[/red]  " if failed else ""
            bar.update(task, advance=1, description=f"{note}{case.case.id}")

        yield advance


def table(result: SuiteResult) -> Table:
    """One row per case: result, runs passed, slowest turn, sources cited, and why it failed."""
    title = f"{result.suite.path.name if result.suite.path else 'suite'} — persona {result.persona.id}, " \
            f"{result.answerer} answerer"
    t = Table(title=title, title_justify="left", show_lines=False, expand=False)
    t.add_column("case", overflow="fold")
    t.add_column("result", no_wrap=True)
    t.add_column("runs", justify="right", no_wrap=True)
    t.add_column("ms", justify="right", no_wrap=True)
    t.add_column("sources", overflow="fold")
    t.add_column("failures", overflow="fold")
    for case in result.cases:
        row = case.as_json()
        runs = "-" if case.skipped else f"{sum(r.passed for r in case.runs)}/{len(case.runs)}"
        ms = "-" if row["latency_ms"] is None else f"{row['latency_ms']:.0f}"
        shown = case.shown.turns[-1] if case.shown.turns else None
        sources = "declined" if shown is not None and shown.declined else ", ".join(shown.sources if shown else [])
        t.add_row(case.case.id, _RESULT[case.passed], runs, ms, sources or "-", "\n".join(case.failures))
    return t


def summary(result: SuiteResult) -> str:
    parts = [f"{result.passed} passed", f"{result.failed} failed"]
    if result.skipped:
        parts.append(f"{result.skipped} skipped")
    return f"{', '.join(parts)} in {result.took_s:.1f} s (knowledge ready in {result.ready_s:.1f} s)"


def print_table(result: SuiteResult, stream: IO[str]) -> None:
    """The table and a one-line summary, coloured on a terminal, plain text otherwise."""
    console = Console(file=stream, width=None if stream.isatty() else 160)
    console.print(table(result))
    style = "bold red" if result.failed else "bold green"
    console.print(Text(summary(result), style=style))


def to_json(result: SuiteResult) -> str:
    """``{"cases": [{"id", "passed", "answer", "sources", "declined", "latency_ms", "failures"}], "passed",
    "failed"}``."""
    return json.dumps(result.as_json(), ensure_ascii=False, indent=2)
