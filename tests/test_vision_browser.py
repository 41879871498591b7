"""The camera end to end in headless Chromium: Fay's real web client, a fake camera playing a Y4M file made here
from scikit-image's public-domain ``astronaut()`` photo (an empty room, the face on the left, then on the right,
then an empty room again), a silent fake microphone, WebRTC over loopback, OpenCV's face detector, Piper's voice
and the 3D head.

The page shows the camera notice before it asks for the camera; ``UserArrived`` then ``UserLeft`` reach it as
``presence`` messages; the greeting is spoken on arrival; the head's yaw turns left while the face is on the left
and right while it is on the right. A visitor who refuses the camera gets the conversation as without one.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer

import fay_opencv
from fay_core.app import Fay
from fay_core.server import create_app
from fay_core.testing import test_settings
from fay_core.vision import DEFAULT_CAMERA_NOTICE, scenes
from tests.test_avatar_browser import check_browser, silence_wav

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

ROOT = Path(__file__).resolve().parent.parent
DRIVER = ROOT / "tests" / "browser" / "vision.mjs"
GREETING = "Hello, I'm Ava. Welcome to the branch."
FPS = 10

KIOSK = f"""\
name: Ava (kiosk)
language: en
voice:
  engine: piper
avatar:
  renderer: params3d
greeting: {GREETING}
vision:
  enabled: true
  fps: 3
  absent_s: 1.5
knowledge:
  only: true
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site(tmp_path_factory: pytest.TempPathFactory) -> Any:
    check_browser()
    tmp = tmp_path_factory.mktemp("vision")
    personas = tmp / "personas"
    personas.mkdir()
    (personas / "kiosk.yaml").write_text(KIOSK)
    settings = test_settings(
        tmp / "data", personas_dir=personas, default_persona="kiosk",
        webrtc={"host_addresses": ["127.0.0.1"], "remote_networks": ["127.0.0.0/8"]},
    )
    fay = Fay(settings)
    if "opencv" not in fay.plugins.engines["vision"]:  # (an install older than this plugin's entry point)
        fay.plugins.register(fay_opencv, "opencv")
    server = TestServer(create_app(fay), host="127.0.0.1")
    await server.start_server()
    await asyncio.to_thread(fay.plugins.engine("tts", "piper").load)  # the voice is warm before the greeting
    await asyncio.to_thread(fay.plugins.engine("vision", "opencv").faces, scenes.frame(0.0))
    frames = (image for _, image in scenes.walk(FPS, lead_s=4.0, left_s=5.0, right_s=5.0, empty_s=6.0))
    y4m = scenes.write_y4m(tmp / "visitor.y4m", frames, FPS)
    yield str(server.make_url("/")), tmp, y4m
    await server.close()


async def drive(opts: dict[str, Any], tmp: Path, name: str) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        "node", str(DRIVER), json.dumps(opts), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError("the browser driver did not finish in 120 s") from None
    lines = out.decode().strip().splitlines()
    assert lines, f"driver printed nothing; stderr: {err.decode()[-2000:]}"
    (tmp / f"{name}.json").write_text(lines[-1])  # kept for a look when a test fails
    result: dict[str, Any] = json.loads(lines[-1])
    brief = {k: v for k, v in result.items() if k not in ("yaw", "level")}
    assert result["ok"], json.dumps(brief)[:4000]
    assert not result["errors"], result["errors"]
    return result


async def test_the_avatar_sees_a_visitor_arrive_greets_looks_at_them_and_sees_them_leave(
    site: tuple[str, Path, Path],
) -> None:
    url, tmp, y4m = site
    opts = {"url": url, "persona": "kiosk", "y4m": str(y4m), "mic_wav": str(silence_wav(tmp / "silence.wav")),
            "timeout_ms": 60000}
    result = await drive(opts, tmp, "visitor")
    assert result["noticeVisible"] and result["notice"] == DEFAULT_CAMERA_NOTICE["en"]
    assert result["camera"]["granted"] and result["ready"]["camera"] and result["ready"]["voice"]
    assert result["bubbles"].count(GREETING) == 1, result["bubbles"]  # said on arrival, not also shown at once

    presence = result["presence"]
    assert [p["present"] for p in presence[:2]] == [True, False], presence
    arrived, left = presence[0]["at"], presence[1]["at"]

    greeting = [a for a in result["answers"] if a["answered_by"] == "greeting"]
    assert greeting and greeting[0]["text"] == GREETING and greeting[0]["at"] >= arrived
    heard = [t for t, rms in result["level"] if rms > 0.01]
    assert heard and heard[0] >= arrived, "the greeting was not heard after the visitor arrived"

    yaw = result["yaw"]
    before = [v for t, v in yaw if t < arrived - 500]
    during = [(t, v) for t, v in yaw if arrived <= t <= left]
    assert before and max(abs(v) for v in before) < 6, "the head turned before anyone was there"
    t_left, most_left = max(during, key=lambda s: s[1])
    t_right, most_right = min(during, key=lambda s: s[1])
    print(f"\npresence {presence}; yaw left {most_left:.1f} deg at {t_left - arrived:.0f} ms, right "
          f"{most_right:.1f} deg at {t_right - arrived:.0f} ms after arrival; visitor there {left - arrived:.0f} ms")
    # the face on the frame's left (the avatar's left: yaw +), then on its right; idle motion alone stays < 5 deg
    assert most_left > 6 and most_right < -6 and t_left < t_right


async def test_a_refused_camera_leaves_the_conversation_as_it_was(site: tuple[str, Path, Path]) -> None:
    url, tmp, y4m = site
    opts = {"url": url, "persona": "kiosk", "y4m": str(y4m), "mic_wav": str(silence_wav(tmp / "silence.wav")),
            "timeout_ms": 60000, "deny_camera": True, "watch_ms": 2500}
    result = await drive(opts, tmp, "refused")
    assert result["noticeVisible"] and "Camera not used: NotAllowedError" in result["notice"]
    assert not result["camera"]["granted"] and result["camera"]["error"].startswith("NotAllowedError")
    assert result["ready"]["voice"] and not result["ready"]["camera"]
    assert result["presence"] == [] and not [a for a in result["answers"] if a["answered_by"] == "greeting"]
