"""A short soak: ``bench/soak.py`` for 15 s with a few text sessions and one voice session (English: bank questions
spoken by Piper) against a real ``fay run``; no turn is lost, text and voice answers carry their figures, and the
server's RSS and open descriptors stay put after the warm-up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RSS_GROWTH_PCT = 10.0  # short runs are noisy: allocator arenas, caches filling
FD_GROWTH = 8  # a few sockets in flight at the sampled instant


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_a_short_soak_loses_no_turn_and_does_not_grow(tmp_path: Path, shared_data: Path) -> None:
    out = tmp_path / "soak.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAY_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "plugins")])
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "soak.py"), "--minutes", "0.25", "--text-sessions", "3",
         "--voice-sessions", "1", "--languages", "en", "--think-s", "1", "--turns-per-session", "4",
         "--warmup-s", "5", "--sample-s", "1", "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=180,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(out.read_text())
    turns = result["turns"]
    assert turns["text"]["lost"] == 0 and turns["voice"]["lost"] == 0, (result["errors"], run.stdout)
    assert turns["text"]["answered"] >= 6 and turns["voice"]["answered"] >= 1, run.stdout
    assert turns["text"]["wrong"] == 0 and turns["voice"]["wrong"] == 0, (result["errors"], run.stdout)
    flat = result["flat"]
    assert flat["rss_mib"]["growth_pct"] <= RSS_GROWTH_PCT, run.stdout
    assert flat["fds"]["late"] - flat["fds"]["early"] <= FD_GROWTH, run.stdout
