"""A throw-away PostgreSQL cluster for tests and benchmarks of the shared record (``FAY_AUDIT__URL``).

Debian's binaries (``/usr/lib/postgresql/<version>/bin``: ``make system-deps`` installs ``postgresql``); the
cluster lives in a temporary folder owned by the ``postgres`` user (initdb and postgres refuse to run as root), on
a free port of 127.0.0.1 with trust authentication and ``fsync`` off (a test's data need not survive a power cut)::

    with Postgres() as pg:
        settings.audit.url = pg.url
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Postgres:
    """A throw-away PostgreSQL cluster for tests and benchmarks: a temporary folder owned by ``postgres``, on a free
    port of 127.0.0.1, trust auth, one database ``fay`` (:attr:`url`). Debian's binaries
    (``/usr/lib/postgresql/<version>/bin``, ``make system-deps``); run as ``postgres`` when root (initdb refuses
    root). ``with Postgres() as pg:`` starts it and removes it; :meth:`stop` and :meth:`start` kill and revive it.
    """

    @staticmethod
    def bin_dir() -> Path | None:
        """The newest installed PostgreSQL's binaries, or ``None``."""
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
                       if p.parent.parent.name.isdigit() else 0)
        return found[-1].parent if found else None

    def __init__(self) -> None:
        bin_dir = self.bin_dir()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL is not installed: make system-deps (Debian's postgresql)")
        self.bin = bin_dir
        self.dir = Path(tempfile.mkdtemp(prefix="fay-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/fay"
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def _user() -> dict[str, Any]:
        """Run as ``postgres`` when root (initdb and postgres refuse root); signals then reach postgres itself."""
        return {"user": "postgres", "group": "postgres", "extra_groups": []} if os.geteuid() == 0 else {}

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        subprocess.run([str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync",
                        "-E", "UTF8"], check=True, capture_output=True, timeout=60, **self._user())

    def start(self) -> None:
        import psycopg

        self.proc = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(self.data), "-h", "127.0.0.1", "-p", str(self.port), "-k",
             str(self.dir), "-c", "fsync=off", "-c", "shared_buffers=16MB"],
            stdout=subprocess.DEVNULL, stderr=(self.dir / "postgres.log").open("ab"), **self._user())
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", connect_timeout=2,
                                     autocommit=True) as conn:
                    if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'fay'").fetchone():
                        conn.execute("CREATE DATABASE fay")
                    return
            except psycopg.OperationalError:
                if self.proc.poll() is not None:
                    log_text = (self.dir / "postgres.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"postgres exited at start: {log_text}") from None
                if time.monotonic() > deadline:
                    raise RuntimeError("postgres did not accept connections in 30 s") from None
                time.sleep(0.1)

    def __enter__(self) -> Postgres:
        try:
            self.init()
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the server and remove its folder."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # a "fast" shutdown: connected clients are cut off
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def database(self, name: str) -> str:
        """The URL of a new, empty database ``name`` on this cluster."""
        import psycopg

        with psycopg.connect(self.url, connect_timeout=3, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def sql(self, query: str, *args: Any, url: str | None = None) -> list[tuple[Any, ...]]:
        """Run ``query`` with ``args`` on a connection of its own (committed); its rows, if any."""
        import psycopg

        with psycopg.connect(url or self.url, connect_timeout=3) as conn:
            cur = conn.execute(query, args)
            return list(cur.fetchall()) if cur.description else []
