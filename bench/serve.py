"""A real ``fay run`` for the benchmarks that measure the server from outside (``webrtc.py``, ``soak.py``)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent


def fay_env(work: Path, max_sessions: int, **settings: str) -> dict[str, str]:
    """The environment of a server under ``work``: no developer settings, loopback WebRTC, ``settings`` on top."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAY_")}
    env.update(
        FAY_CONFIG=str(work / "none.yaml"), FAY_DATA_DIR=str(work / "data"), FAY_LOG_LEVEL="WARNING",
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        FAY_SERVER__MAX_SESSIONS=str(max_sessions), FAY_WEBRTC__MAX_PEERS=str(max_sessions),
        FAY_WEBRTC__HOST_ADDRESSES='["127.0.0.1"]', FAY_WEBRTC__REMOTE_NETWORKS='["127.0.0.0/8"]',
        PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "plugins"), env.get("PYTHONPATH", "")]),
    )
    env.update(settings)
    return env


async def start_fay(work: Path, port: int, env: dict[str, str], timeout_s: float) -> asyncio.subprocess.Process:
    """``fay run`` on ``127.0.0.1:port`` (its log in ``work/server.log``), once ``/health`` answers.

    Raises :class:`RuntimeError` with the end of the log if it exits or is not healthy within ``timeout_s``.
    """
    with (work / "server.log").open("wb") as log:  # noqa: ASYNC230 - a local file, before anything runs
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "fay_core", "run", "--host", "127.0.0.1", "--port", str(port),
            cwd=work, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=log,
        )
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise RuntimeError(f"the server exited: {(work / 'server.log').read_text()[-2000:]}")
            try:
                async with http.get(f"http://127.0.0.1:{port}/health") as r:
                    if r.status == 200:
                        return proc
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    proc.kill()
    await proc.wait()
    raise RuntimeError(f"the server did not start in {timeout_s:g} s")
