"""``fay audit``: verify the audit log's hash chain and export a session's records for an auditor.

::

    fay audit verify [PATH]                          # exit 0: "ok: N files, M records ..."; 1: "FILE:LINE: why"
    fay audit export --session ID [--format jsonl|csv] [--out FILE]

``PATH`` (a folder or a ``postgresql://`` URL) defaults to ``FAY_AUDIT__URL`` if set, else ``<data_dir>/audit``;
``export`` reads the database too when ``FAY_AUDIT__URL`` is set and no ``--path`` is given. A signed log
(``audit.signing_key``) is verified with the key from the settings, e.g. ``FAY_AUDIT__SIGNING_KEY``.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import click

#: the CSV columns, in order; any other field of a record goes into ``other`` as a JSON object
CSV_COLUMNS = ("seq", "time", "session", "tenant", "turn", "kind", "persona", "persona_version", "source", "text",
               "heard", "answered_by", "interrupted", "error", "message", "citations", "tools", "latency_ms",
               "other", "prev", "hash")


def _settings() -> Any:
    from .settings import load_settings

    return load_settings()


def _key(settings: Any) -> bytes | None:
    key = settings.audit.signing_key
    return key.get_secret_value().encode("utf-8") if key is not None else None


@click.group()
def audit() -> None:
    """The audit log (<data_dir>/audit, or FAY_AUDIT__URL's database): check its hash chain, export a session."""


@audit.command("verify")
@click.argument("path", required=False)
def verify_cmd(path: str | None) -> None:
    """Check the hash chain and HEAD; name the first broken record as FILE:LINE (or fay_audit:SEQ) and why (exit 1).

    PATH: an audit folder or a postgresql:// URL; default: FAY_AUDIT__URL if set, else <data_dir>/audit.
    """
    from .audit_chain import verify

    settings = _settings()
    if path is None and settings.audit.url or path is not None and path.startswith(("postgresql://", "postgres://")):
        _verify_db(path or settings.audit.url, settings)
        return
    folder = Path(path) if path else settings.data_dir / "audit"
    if not folder.is_dir():
        raise click.ClickException(f"no audit folder at {folder}")
    result = verify(folder, _key(settings))
    if result.problem is not None:
        p = result.problem
        click.echo(f"{folder / p.file if p.file else folder}:{p.line}: {p.why}", err=True)
        click.echo(f"audit log BROKEN after {result.records} good records in {result.files} files", err=True)
        sys.exit(1)
    click.echo(result.summary())


def _verify_db(url: str, settings: Any) -> None:
    from .audit_pg import PgAuditLog
    from .pg import Database

    db = Database(url)
    try:
        result = PgAuditLog(db, settings.audit).verify()
    finally:
        db.close()
    if result.problem is not None:
        p = result.problem
        click.echo(f"{db.where} {p.file}:{p.line}: {p.why}" if p.file else f"{db.where}: {p.why}", err=True)
        click.echo(f"audit log BROKEN after {result.records} good records", err=True)
        sys.exit(1)
    if not result.records:
        click.echo(f"ok: {db.where}, no records")
    else:
        click.echo(f"ok: {db.where}, {result.records} records (seq {result.first_seq}..{result.last_seq}, "
                   f"last hash {result.last_hash})")


def _records(folder: Path, session_id: str) -> Iterator[tuple[bytes, dict[str, Any]]]:
    from .audit_chain import file_names

    for name in file_names(folder):
        # complete lines only: a last line without its newline is being written (or torn: verify reports it)
        for raw in (folder / name).read_bytes().split(b"\n")[:-1]:
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
            except ValueError as exc:
                why = f"{folder / name}: a line is not JSON ({exc}): run fay audit verify"
                raise click.ClickException(why) from None
            if isinstance(rec, dict) and rec.get("session") == session_id:
                yield raw, rec


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def csv_row(record: dict[str, Any]) -> list[str]:
    """One record as the cells of :data:`CSV_COLUMNS` (nested values and ``other`` as JSON)."""
    other = {k: v for k, v in record.items() if k not in CSV_COLUMNS}
    return [_cell(other or None) if c == "other" else _cell(record.get(c)) for c in CSV_COLUMNS]


@audit.command("export")
@click.option("--session", "session_id", required=True, help="the session id whose records to export")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True,
              help="jsonl: the records' lines exactly as written (hashes verifiable); csv: one row per record")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="file (default: stdout)")
@click.option("--path", "folder", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="the audit folder (default: <data_dir>/audit)")
def export_cmd(session_id: str, fmt: str, out: Path | None, folder: Path | None) -> None:
    """Export one session's records, oldest first."""
    settings = _settings()
    if folder is None and settings.audit.url:
        _export_db(settings, session_id, fmt, out)
        return
    folder = folder or settings.data_dir / "audit"
    if not folder.is_dir():
        raise click.ClickException(f"no audit folder at {folder}")
    if out is None:
        stream = sys.stdout.buffer
        count = _export(folder, session_id, fmt, stream)
        stream.flush()
    else:
        with out.open("wb") as f:
            count = _export(folder, session_id, fmt, f)
    if count == 0:
        click.echo(f"no records of session {session_id!r} in {folder}", err=True)


def _export_db(settings: Any, session_id: str, fmt: str, out: Path | None) -> None:
    from .audit_pg import PgAuditLog
    from .pg import Database

    db = Database(settings.audit.url)
    try:
        lines = PgAuditLog(db, settings.audit).lines(session_id)
    except db.errors as exc:
        raise click.ClickException(f"the audit database {db.where} cannot be read: {exc}") from None
    finally:
        db.close()
    rows = [(raw, json.loads(raw)) for raw in lines]
    if out is None:
        _write(rows, fmt, sys.stdout.buffer)
        sys.stdout.buffer.flush()
    else:
        with out.open("wb") as f:
            _write(rows, fmt, f)
    if not rows:
        click.echo(f"no records of session {session_id!r} in {db.where}", err=True)


def _export(folder: Path, session_id: str, fmt: str, sink: IO[bytes]) -> int:
    return _write(_records(folder, session_id), fmt, sink)


def _write(records: Iterable[tuple[bytes, dict[str, Any]]], fmt: str, sink: IO[bytes]) -> int:
    count = 0
    if fmt == "jsonl":
        for raw, _rec in records:
            sink.write(raw + b"\n")
            count += 1
        return count
    text = io.TextIOWrapper(sink, encoding="utf-8", errors="backslashreplace", newline="", write_through=True)
    try:
        writer = csv.writer(text)
        writer.writerow(CSV_COLUMNS)
        for _raw, rec in records:
            writer.writerow(csv_row(rec))
            count += 1
    finally:
        text.detach()
    return count
