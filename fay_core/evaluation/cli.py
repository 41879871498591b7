"""``fay eval SPEC.yaml [--json]``: run a persona's test suite, print a pass/fail table, exit 1 on failures."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import click


@click.command("eval")
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True,
              help='print {"cases": [{"id", "passed", "answer", "sources", "declined", "latency_ms", "failures"}], '
                   '"passed", "failed"} instead of the table')
def eval_command(spec: Path, as_json: bool) -> None:
    """Run the test suite SPEC against its persona, as customers would talk to it.

    Each case runs in a new session with your settings: the configured LLM, or the offline answerer without one.
    Cases with a simulated customer or a judge need an LLM and are skipped without one. Exits 1 if a case failed,
    2 if the suite (or the persona) cannot be loaded. Suites of the shipped personas: personas/evals/.
    """
    from ..app import Fay
    from ..redaction import install_log_filter
    from .report import print_table, progress_bar, to_json
    from .runner import Evaluator
    from .spec import load_suite

    suite = load_suite(spec)
    fay = Fay()
    logging.basicConfig(level="WARNING", format="%(levelname)s %(name)s: %(message)s")
    install_log_filter(fay.assembly.redactor)  # personal data masked in what the engines log

    async def main() -> int:
        async with fay:
            evaluator = Evaluator(fay, suite)
            with progress_bar(len(suite.cases), sys.stderr) as advance:
                result = await evaluator.run(advance)
        if as_json:
            click.echo(to_json(result))
        else:
            print_table(result, sys.stdout)
        return 1 if result.failed else 0

    sys.exit(asyncio.run(main()))
