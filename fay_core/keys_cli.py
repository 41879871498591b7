"""``fay keys``: create, list and revoke API keys (see :mod:`fay_core.keys` and :mod:`fay_core.access`)."""

from __future__ import annotations

import json
from typing import Any

import click

from .keys import SCOPES, KeyStore


def _store() -> KeyStore:
    from .settings import load_settings

    return KeyStore.in_data_dir(load_settings().data_dir)


@click.group()
def keys() -> None:
    """API keys: named, per tenant, with scopes (chat, admin, ingest), stored as digests in <data_dir>/keys.json.

    Once a key exists, every /api/* request needs one (or server.token); a running server sees changes at once.
    """


@keys.command("create")
@click.option("--tenant", required=True, help="the tenant (bank, branch) the key acts for, e.g. harbor-bank")
@click.option("--name", required=True, help="who holds the key, e.g. 'branch 42 kiosk'")
@click.option("--scope", "scopes", multiple=True, type=click.Choice(SCOPES), default=("chat",), show_default=True,
              help="what the key may do (repeat for several): chat, admin (sessions, audit), ingest (knowledge)")
@click.option("--sessions-per-minute", type=click.IntRange(min=1), default=None,
              help="sessions this key may start a minute (default: keys.sessions_per_minute)")
@click.option("--messages-per-minute", type=click.IntRange(min=1), default=None,
              help="messages this key may send a minute (default: keys.messages_per_minute)")
def create(tenant: str, name: str, scopes: tuple[Any, ...], sessions_per_minute: int | None,
           messages_per_minute: int | None) -> None:
    """Create a key and print it. It is shown this once: the server keeps only its digest."""
    record, key = _store().create(name=name, tenant=tenant, scopes=scopes, sessions_per_minute=sessions_per_minute,
                                  messages_per_minute=messages_per_minute)
    click.echo(f"created key {record.id} for tenant {record.tenant} ({', '.join(record.scopes)}); it is shown only "
               "now, store it safely:", err=True)
    click.echo(key)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="print a JSON list (no secrets, no digests)")
def list_keys(as_json: bool) -> None:
    """List keys (never their secrets): id, tenant, scopes, name, created, revoked."""
    records = sorted(_store().keys().values(), key=lambda k: (k.tenant, k.created, k.id))
    if as_json:
        click.echo(json.dumps([k.public() for k in records], ensure_ascii=False, indent=2))
        return
    if not records:
        click.echo("no keys: /api/* is open, or protected by server.token (fay keys create --tenant T --name N)")
    for k in records:
        state = f"revoked {k.revoked}" if k.revoked else "active"
        limits = "".join(f" {n}/min {what}" for n, what in ((k.sessions_per_minute, "sessions"),
                                                           (k.messages_per_minute, "messages")) if n)
        click.echo(f"{k.id}  {k.tenant:24} {','.join(k.scopes):18} {state:28} {k.name}{limits}")


@keys.command("revoke")
@click.argument("key_id")
def revoke(key_id: str) -> None:
    """Revoke key KEY_ID (see `fay keys list`); a running server refuses it from now on."""
    record = _store().revoke(key_id)
    click.echo(f"revoked {record.id} ({record.tenant}: {record.name}) at {record.revoked}")
