"""The role-play in the web client and its report page, in headless Chromium.

A sales role-play (sales_en, offline: the customer's scripted lines) is typed into the web client over WebRTC: the
scenario bar shows the step and a ticking clock, and links the report when the scenario ends. On the report page:
score bars, a quote that opens its turn in the transcript with its time, the speech charts, a trainer's override
kept beside the AI's score (and on disk), and, for a trainee with two sessions, the trend chart. Screenshots are
saved under ``build/test-artifacts/`` (or ``$FAY_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiohttp import ClientSession
from test_browser import CHROMIUM, ROOT, _require_tools, artifact
from test_roleplay_runner import GOOD_ADVISER, SALES_ALONE
from test_webrtc import serve, webrtc_settings

from fay_core.persona import parse_persona

DRIVER = ROOT / "tests" / "browser" / "report.mjs"
pytestmark = pytest.mark.slow


async def run_driver(node: str, options: dict[str, object], timeout_s: float = 150,
                     driver: Path = DRIVER) -> dict[str, object]:
    """Run a browser driver (``tests/browser/*.mjs``) with ``options``; its last printed line, as JSON."""
    import asyncio
    import os

    proc = await asyncio.create_subprocess_exec(
        node, str(driver), json.dumps(options), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PLAYWRIGHT_BROWSERS_PATH": "0", "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"})
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"the browser driver did not finish in {timeout_s}s") from None
    lines = out.decode().strip().splitlines()
    assert proc.returncode == 0 and lines, f"driver failed ({proc.returncode}): {err.decode()[-2000:]}"
    return dict(json.loads(lines[-1]))


async def test_role_play_in_the_web_client_and_its_report_page(tmp_path: Path) -> None:
    node = _require_tools()
    settings = webrtc_settings(tmp_path)
    (settings.personas_dir / "sales_en.yaml").write_text(SALES_ALONE, encoding="utf-8")
    persona = parse_persona(SALES_ALONE, "sales_en.yaml")
    served = await serve(settings)
    try:
        async with ClientSession(base_url=served.url) as http:  # a trainee's two earlier sessions, over HTTP
            trainee_sids = []
            for lines in (GOOD_ADVISER[:2] + ["Nice card.", "Yes.", "Ok.", "Sure.", "Bye."], GOOD_ADVISER):
                async with http.post("/api/sessions", json={"persona": "sales_en", "trainee": "mia"}) as r:
                    sid = (await r.json())["session_id"]
                for line in lines:
                    async with http.post(f"/api/sessions/{sid}/messages", json={"text": line}) as r:
                        await r.read()
                async with http.delete(f"/api/sessions/{sid}") as r:
                    assert r.status == 200
                trainee_sids.append(sid)
        shots = {k: artifact(f"roleplay_{k}.png") for k in ("client", "report", "trend")}
        result = await run_driver(node, {
            "url": served.url, "persona": "sales_en", "lines": GOOD_ADVISER, "chromium": CHROMIUM,
            "timeout_ms": 60000, "override": {"score": 3, "comment": "Asked about travel, but only once."},
            "screenshot_client": str(shots["client"]), "screenshot_report": str(shots["report"]),
            "trend_url": f"{served.url.rstrip('/')}/web/report.html?session={trainee_sids[1]}",
            "screenshot_trend": str(shots["trend"]),
        })
        assert result["ok"] and not result["errors"], json.dumps({k: result.get(k) for k in (
            "errors", "steps", "console", "ended")}, indent=1)[-4000:]
        assert not [c for c in result["console"] if c.startswith("error")], result["console"]
        # the scenario bar: the step and its aim after each turn, a clock that ticks, the report link at the end
        bars = result["scenario"]
        steps = persona.scenario.steps
        assert [b["step"] for b in bars[:4]] == ["1 of 5", "2 of 5", "3 of 5", "5 of 5"], bars
        assert bars[1]["aim"] == steps[1].aim and not bars[0]["hidden"]
        assert result["ticked"] and result["ended"]["step"] == "ended" and result["reportVisible"]
        assert result["reportHref"].startswith("/web/report.html?session=")
        # the report page
        report = result["report"]
        names = [c["name"] for c in report["criteria"]]
        assert names == [item.criterion for item in persona.scenario.rubric]
        assert all(c["width"].endswith("%") for c in report["criteria"]) and float(report["total"]) > 0
        assert sum(c["found"] for c in report["criteria"]) >= 4 and report["quotes"]
        shown = report["highlighted"]
        first = report["quotes"][0]
        assert shown["turn"] == first["turn"] and "turn-trainee" in shown["cls"] and "hl" in shown["cls"]
        assert shown["when"] and shown["when"] in first["text"] and shown["mark"] and shown["mark"] in first["text"]
        assert shown["visible"]
        assert {"talk_share", "words_per_minute", "fillers_per_minute", "longest_pause_s"} <= set(report["metrics"])
        assert report["timeline"] >= 10  # one bar per timed turn
        after = report["afterOverride"]
        assert after["status"] == "saved" and after["score"].startswith("3 / 10") and after["overridden"]
        assert after["ai"].startswith("AI ") and after["aiMark"] and "only once" in after["comment"]
        assert after["totalAi"].startswith("AI total")
        sid = result["reportHref"].split("=", 1)[1]
        stored = json.loads((settings.data_dir / "reports" / "default" / f"{sid}.json").read_text("utf-8"))
        (override,) = stored["overrides"].values()
        ai = next(c["score"] for c in stored["scorecard"]["criteria"] if c["criterion"] == names[0])
        assert override["score"] == 3 and override["ai_score"] == ai and after["ai"] == f"AI {ai:g}"
        # the trainee's trend: both sessions, the one shown marked
        points = result["trend"]["points"]
        assert [p["session"] for p in points] == trainee_sids and [p["current"] for p in points] == [False, True]
        assert all(shot.stat().st_size > 10_000 for shot in shots.values())
    finally:
        await served.server.close()
