"""``fay roleplay``: score a finished role-play transcript on its persona's rubric (see :mod:`.scoring`)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import click

from ..errors import PersonaError
from .scoring import NO_RUBRIC, Scorecard


@click.group()
def roleplay() -> None:
    """Role-play training: rubric scores with evidence quotes, and speech metrics."""


@roleplay.command("score")
@click.argument("persona_file", type=click.Path(path_type=Path))
@click.argument("transcript_file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="print the scorecard as JSON (criteria, metrics, total)")
@click.option("--offline", is_flag=True, help="never ask the LLM judge, even if an LLM is configured")
def score(persona_file: Path, transcript_file: Path, as_json: bool, offline: bool) -> None:
    """Score TRANSCRIPT_FILE ({"turns": [{"speaker", "text", "start_s", "end_s"}]}) on PERSONA_FILE's rubric.

    Offline (the knowledge base's embedder finds each check in the trainee's words), or with the configured LLM
    as judge, whose quotes are checked against the transcript.
    """
    from ..brain.llm import LLMConfig
    from ..knowledge import resolve_embedder
    from ..persona import load_persona
    from ..plugins import Plugins
    from ..settings import load_settings
    from .scoring import score_transcript
    from .transcript import Transcript

    persona = load_persona(persona_file)
    transcript = Transcript.load(transcript_file)
    if not persona.scenario.rubric:
        raise PersonaError(f"{persona_file}: {NO_RUBRIC}")
    settings = load_settings()
    embedder = resolve_embedder(settings, Plugins(settings).load())
    llm = None if offline else LLMConfig.resolve(settings.llm, persona)
    card = asyncio.run(score_transcript(persona, transcript, embedder=embedder, llm=llm))
    if as_json:
        click.echo(json.dumps(card.to_dict(), ensure_ascii=False, indent=2))
    else:
        click.echo(render(card))


def render(card: Scorecard) -> str:
    """The scorecard as a table for people: criteria, evidence, missing checks, violations, metrics."""
    lines = []
    for c in card.criteria:
        shown = "  -  " if c.score is None else f"{c.score:4.1f}"
        lines.append(f"{shown} / {c.max_score:g}  {c.criterion} (weight {c.weight:g}, {c.method})")
        for k in c.checks:
            mark = "+" if k.found else "-"
            lines.append(f"    {mark} {k.check}" + (f"\n        turn {k.turn}: \"{k.quote}\"" if k.found else ""))
        for v in c.violations:
            lines.append(f"    ! {v.avoid}\n        turn {v.turn}: \"{v.quote}\"")
        for d in c.dropped:
            lines.append(f"    x dropped (not in the transcript): \"{d.get('quote') or d.get('evidence')}\"")
        if c.note:
            lines.append(f"    note: {c.note}")
    total = "-" if card.total is None else f"{card.total:.1f}"
    lines.append(f"total {total} / {card.max_total:g}   ({card.method})")
    if card.note:
        lines.append(f"note: {card.note}")
    metrics = {k: v for k, v in card.metrics.items() if v is not None}
    lines.append("metrics: " + ", ".join(f"{k} {v}" for k, v in metrics.items()))
    return "\n".join(lines)


@roleplay.command("report")
@click.argument("session_id")
@click.option("--tenant", default="default", show_default=True, help="the tenant whose report it is")
@click.option("--json", "as_json", is_flag=True, help="print the stored report as JSON (with 'final' and 'trend')")
def report(session_id: str, tenant: str, as_json: bool) -> None:
    """Print the stored report of role-play session SESSION_ID (see fay_core.roleplay.reports)."""
    from ..record_store import open_records
    from ..settings import load_settings
    from .reports import render_report, view

    shown = view(open_records(load_settings()).reports, tenant, session_id)
    if as_json:
        click.echo(json.dumps(shown, ensure_ascii=False, indent=2))
    else:
        click.echo(render_report(shown))
