"""The ``fay`` command line: ``run``, ``chat``, ``tts``, ``persona``, ``plugins``, ``kb``, ``keys``, ``audit``,
``roleplay``, ``eval`` (and plugin commands)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .errors import ConfigError, FayError, PersonaError
from . import wire
from .events import AgentTextDelta, AgentTurnFinished, ErrorRaised
from .redaction import Redactor, install_log_filter


def _setup_logging(level: str, redactor: Redactor | None = None) -> None:
    """Log to stderr at ``level``, with personal data masked (``redactor``: the runtime's, with plugin detectors)."""
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_filter(redactor)
    for noisy in ("LiteLLM", "litellm", "httpx", "aioice", "aiortc", "chromadb", "jieba"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class FayGroup(click.Group):
    """Turns Fay's errors into a clear message and exit code 2 instead of a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except FayError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)


@click.group(cls=FayGroup)
@click.version_option(package_name="fay")
def cli() -> None:
    """Fay: conversational avatars that listen, think over a knowledge base, and answer with a voice and a face."""


@cli.command()
@click.option("--host", default=None, help="address to listen on (default: server.host, 127.0.0.1)")
@click.option("--port", default=None, type=int, help="port (default: server.port, 8000)")
def run(host: str | None, port: int | None) -> None:
    """Start the server (HTTP API, web client, WebRTC)."""
    from aiohttp import web

    from .app import Fay
    from .server import create_app

    started = time.monotonic()
    fay = Fay()
    _setup_logging(fay.settings.log_level, fay.assembly.redactor)
    host = host or fay.settings.server.host
    port = port if port is not None else fay.settings.server.port
    app = create_app(fay)

    async def announce(_app: web.Application) -> None:
        llm = fay.settings.llm.model or "none (offline knowledge answerer)"
        click.echo(
            f"Fay ready on http://{host}:{port}/ in {time.monotonic() - started:.1f}s "
            f"(persona {fay.settings.default_persona}, LLM {llm})",
            err=True,
        )

    async def warm_up(_app: web.Application) -> Any:
        # in the background: /health answers at once, the first visitor finds the models loaded
        task = asyncio.get_running_loop().create_task(fay.warm_up(), name="fay.warm-up")
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    limit = fay.settings.server.shutdown_timeout_s

    async def bound_shutdown(_app: web.Application) -> None:
        # SIGTERM (or Ctrl-C) started the shutdown: whatever hangs (a thread ingesting, an engine), exit in time
        timer = threading.Timer(limit, _exit_now, args=(limit,))
        timer.daemon = True
        timer.start()

    app.on_startup.append(announce)
    app.on_shutdown.insert(0, bound_shutdown)
    app.cleanup_ctx.append(warm_up)
    with asyncio.Runner(loop_factory=event_loop_factory(fay.settings.server.event_loop)) as runner:
        runner.run(_serve(app, fay, host, port, shutdown_timeout=limit / 2))


def event_loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop ``fay run`` serves on (``server.event_loop``): uvloop when ``auto`` finds it installed.

    uvloop (libuv) reads up to 32 datagrams of a UDP socket per wake-up where asyncio's own loop reads one, so a
    WebRTC peer's packets keep up with a loop that runs late instead of piling up in the socket (and its ICE
    consent checks with them); its loop itself is also several times faster. ``None``: asyncio's own loop.
    """
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError("server.event_loop is uvloop, but uvloop is not installed: pip install uvloop, or set "
                              "server.event_loop to auto or asyncio") from None
        return None
    return uvloop.new_event_loop


async def _serve(app: Any, fay: Any, host: str, port: int, *, shutdown_timeout: float) -> None:
    """Serve ``app`` until SIGTERM or SIGINT; then drain (``server.drain_timeout_s``: no new sessions, /ready 503,
    the open sessions may end; a second signal cuts it short) while still serving, and shut down."""
    import signal

    from aiohttp import web

    # open requests get half the time to end (sessions are closed first, which ends their streams), cleanup the rest
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def signalled() -> None:
        if stop.is_set():
            fay.cut_drain()
        stop.set()

    try:
        await web.TCPSite(runner, host, port).start()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, signalled)
        await stop.wait()
        drain = fay.settings.server.drain_timeout_s
        if drain > 0:
            await fay.drain(drain)
    finally:
        await runner.cleanup()


def _exit_now(limit: float) -> None:
    """The end of a shutdown that overran ``server.shutdown_timeout_s`` (every audit record is already written)."""
    logging.getLogger(__name__).error("shutdown did not finish in %g s (server.shutdown_timeout_s): exiting now",
                                      limit)
    logging.shutdown()
    os._exit(1)


@cli.command()
@click.option("--persona", "persona_id", default=None, help="persona id (file name in personas/)")
@click.option("--json", "as_json", is_flag=True,
              help="print every answer event as a JSON line, as the HTTP API and the data channel send it")
def chat(persona_id: str | None, as_json: bool) -> None:
    """Chat in the terminal. Piped input: one reply per line (or, with --json, one JSON line per event)."""
    from .app import Fay

    fay = Fay()
    _setup_logging("WARNING", fay.assembly.redactor)
    interactive = sys.stdin.isatty()

    async def main() -> None:
        async with fay:
            session = await fay.create_session(persona_id)
            if interactive:
                click.echo(f"{session.persona.name} — Ctrl-D to quit")
            if not as_json:  # (--json: the first answer stream's first message is the disclosure)
                click.echo(session.disclosure.deliver("cli").text, err=not interactive)
            if interactive and session.persona.greeting:
                click.echo(session.persona.greeting)
            while True:
                line = await asyncio.to_thread(_read_line, interactive)
                if line is None:
                    break
                if not line.strip():
                    continue
                async for event in session.ask(line):
                    if as_json:
                        click.echo(json.dumps(wire.message(event), ensure_ascii=False))
                    elif isinstance(event, AgentTextDelta) and interactive:
                        click.echo(event.text, nl=False)
                    elif isinstance(event, ErrorRaised):
                        click.echo(f"[{event.source}] {event.message}", err=True)
                    elif isinstance(event, AgentTurnFinished):
                        click.echo("" if interactive else " ".join(event.text.split()))

    asyncio.run(main())


def _read_line(interactive: bool) -> str | None:
    try:
        return input("> ") if interactive else sys.stdin.readline() or None
    except EOFError:
        return None


@cli.command()
@click.argument("text")
@click.option("--persona", "persona_id", default=None,
              help="speak with this persona's voice chain (default: the default persona)")
@click.option("--engine", default=None, help="speak with this TTS engine only (no fallback)")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="the WAV file to write")
def tts(text: str, persona_id: str | None, engine: str | None, out: Path) -> None:
    """Speak TEXT with a persona's voice chain, or with one engine, into a WAV file (with its AIGC label).

    With --engine and no --persona, text with Chinese characters is spoken as Mandarin.
    """
    from .bus import Bus
    from .labels import AIGCLabel, write_wav
    from .persona import PersonaStore
    from .plugins import Plugins
    from .settings import load_settings
    from .text import is_han
    from .voice.audio import resample
    from .voice.tts import Speaker

    if persona_id and engine:
        raise click.UsageError("give --persona or --engine, not both")
    settings = load_settings()
    _setup_logging("WARNING")
    who = PersonaStore(settings.personas_dir).get(persona_id or settings.default_persona)
    if engine:
        language = "zh" if any(is_han(c) for c in text) else who.language
        voice = who.voice.model_copy(update={"engine": engine, "fallback": []})
        who = who.model_copy(update={"voice": voice, "language": language})
    speaker = Speaker(Bus("fay-tts"), who, settings.voice, Plugins(settings).load())

    async def speak() -> tuple[bytes, int]:
        chunks = [c async for c in speaker.speak(text, turn_id=0)]
        rate = chunks[0].sample_rate if chunks else 24000
        return b"".join(c.pcm if c.sample_rate == rate else resample(c.pcm, c.sample_rate, rate) for c in chunks), rate

    pcm, rate = asyncio.run(speak())
    label = write_wav(out, pcm, rate, 1, AIGCLabel.for_session("fay-tts", who.tenant))
    click.echo(f"wrote {out}: {len(pcm) / 2 / rate:.2f} s at {rate} Hz ({', '.join(speaker.used)}), AIGC label "
               f"{label.produce_id}")


@cli.group()
def persona() -> None:
    """Check and list personas."""


@persona.command("validate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def persona_validate(paths: tuple[Path, ...]) -> None:
    """Validate persona files; print file:line: field for each problem."""
    from .persona import load_persona

    failed = 0
    files = [f for p in paths for f in (sorted(p.glob("*.yaml")) if p.is_dir() else [p])]
    for path in files:
        try:
            p = load_persona(path)
            click.echo(f"ok    {path} ({p.name}, {p.language})")
        except PersonaError as exc:
            failed += 1
            click.echo(str(exc), err=True)
    if failed:
        click.echo(f"{failed} of {len(files)} persona file(s) invalid", err=True)
        sys.exit(1)


@persona.command("list")
def persona_list() -> None:
    """List the personas of the personas folder."""
    from .persona import PersonaStore
    from .settings import load_settings

    settings = load_settings()
    store = PersonaStore(settings.personas_dir)
    for pid in store.ids():
        try:
            p = store.get(pid)
            mark = "*" if pid == settings.default_persona else " "
            click.echo(f"{mark} {pid:24} {p.language:4} {p.name}")
        except PersonaError as exc:
            click.echo(f"! {pid:24} invalid: {exc}")


@cli.command()
def plugins() -> None:
    """List plugins: version, where they come from, hooks, and what they provide."""
    from .plugins import Plugins
    from .settings import load_settings

    loaded = Plugins(load_settings()).load()
    if not loaded.infos:
        click.echo("no plugins installed")
    for info in loaded.infos:
        source = info.distribution or "?"
        click.echo(f"{info.name} {info.version} ({source}: {info.module})")
        if info.error:
            click.echo(f"    FAILED: {info.error}")
            continue
        click.echo(f"    hooks: {', '.join(info.hooks) or '-'}")
        if info.provides:
            click.echo(f"    provides: {', '.join(info.provides)}")
    if any(i.error for i in loaded.infos):
        sys.exit(1)


from .audit_cli import audit  # noqa: E402
from .evaluation.cli import eval_command  # noqa: E402
from .knowledge.cli import kb  # noqa: E402
from .keys_cli import keys  # noqa: E402
from .roleplay.cli import roleplay  # noqa: E402

cli.add_command(kb)
cli.add_command(audit)
cli.add_command(keys)
cli.add_command(roleplay)
cli.add_command(eval_command)


def _add_plugin_commands() -> None:
    try:
        from .plugins import Plugins

        loaded = Plugins().load()
        loaded.pm.hook.register_commands(cli=cli)
    except Exception as exc:  # plugin commands must never make the core CLI unusable
        logging.getLogger(__name__).warning("plugin commands not added: %s", exc)


def main() -> None:
    _add_plugin_commands()
    cli()
