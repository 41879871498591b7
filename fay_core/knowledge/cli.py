"""``fay kb``: ingest files into knowledge-base collections, query, list and delete them."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click


def _open() -> Any:
    """The knowledge base, opened and checked as the server opens it: one that fails its check is moved aside
    (never deleted) and an empty one started, and the command says so."""
    from ..plugins import Plugins
    from ..settings import load_settings
    from . import Knowledge

    settings = load_settings()
    knowledge = Knowledge(settings, Plugins(settings).load())
    base = knowledge.base()
    status = knowledge.status()
    if status.moved_to is not None:
        lost = ", ".join(status.lost) or "none"
        click.echo(f"warning: the knowledge base failed its check and was moved aside to {status.moved_to}; an "
                   f"empty one was started (collections to ingest again: {lost})", err=True)
    return base


@click.group()
def kb() -> None:
    """The knowledge base: collections of FAQ entries and document chunks under <data_dir>/knowledge."""


@kb.command("ingest")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--collection", "-c", required=True, help="collection name (3-64 of A-Z a-z 0-9 . _ -)")
@click.option("--prune/--no-prune", default=True, help="drop files that disappeared from ingested folders")
def ingest(paths: tuple[Path, ...], collection: str, prune: bool) -> None:
    """Ingest Markdown, text, PDF, CSV, JSON and YAML files (folders recursively). Unchanged files are skipped."""
    knowledge = _open()
    report = knowledge.ingest(list(paths), collection, progress=sys.stderr.isatty(), prune=prune)
    for line in report.skipped:
        click.echo(f"skipped {line}", err=True)
    click.echo(report.summary())


@kb.command("query")
@click.argument("text")
@click.option("--collection", "-c", "collections", required=True, multiple=True, help="collection(s) to search")
@click.option("--top-k", "-k", default=5, show_default=True, type=click.IntRange(1, 100))
@click.option("--json", "as_json", is_flag=True, help="print a JSON list of hits (id, source, score, text, ...)")
def query(text: str, collections: tuple[str, ...], top_k: int, as_json: bool) -> None:
    """Search collections for TEXT (hybrid ranking; a confidence under knowledge.min_score counts as not found)."""
    hits = _open().search(text, list(collections), top_k=top_k)
    if as_json:
        click.echo(json.dumps([h.as_json() for h in hits], ensure_ascii=False, indent=2))
        return
    if not hits:
        click.echo("no hits")
    for i, h in enumerate(hits, 1):
        where = h.source + (f" p.{h.entry.page}" if h.entry.page else "")
        click.echo(f"{i}. [confidence {h.confidence:.3f}] {where} — {h.entry.section or h.entry.title}")
        body = " ".join(h.entry.text.split())
        click.echo(f"   {body[:200]}{'…' if len(body) > 200 else ''}")


@kb.command("list")
def list_collections() -> None:
    """List collections: embedder, files, entries, rows."""
    infos = _open().collections()
    if not infos:
        click.echo("no collections (fay kb ingest PATH --collection NAME)")
    for c in infos:
        click.echo(f"{c.name:32} {c.embedder:10} {c.files:5} files {c.entries:7} entries {c.rows:8} rows")


@kb.command("delete")
@click.argument("collection")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
def delete(collection: str, yes: bool) -> None:
    """Delete a collection and everything in it."""
    knowledge = _open()
    if not knowledge.has(collection):
        raise click.ClickException(f"no collection named {collection!r} (see: fay kb list)")
    if not yes:
        click.confirm(f"delete collection {collection!r}?", abort=True)
    knowledge.delete(collection)
    click.echo(f"deleted {collection}")
