"""End to end with a real browser: headless Chromium speaks a recorded question into the web client.

Chromium's fake microphone plays a WAV made at test time with espeak-ng; the page connects over WebRTC to a Fay
server on 127.0.0.1 (ICE restricted to loopback on both sides: the server offers only 127.0.0.1 and ignores
other remote candidates, Chromium runs with --allow-loopback-in-peer-connection and no DNS). The test asserts that
the transcript and the answer (with its source) appear on the page, that answer audio arrives (the receiver's
audio level rises above silence), and that the session is freed and its record kept once the page is refreshed.
A screenshot is saved under ``build/test-artifacts/`` (or ``$FAY_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_webrtc import serve, until, webrtc_settings

ROOT = Path(__file__).resolve().parent.parent
DRIVER = ROOT / "tests" / "browser" / "drive.mjs"
CHROMIUM = os.environ.get("FAY_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("FAY_TEST_ARTIFACTS", ROOT / "build" / "test-artifacts"))

pytestmark = pytest.mark.slow


def _require_tools() -> str:
    node = shutil.which("node")
    missing = []
    if node is None:
        missing.append("node (Debian nodejs)")
    if not Path(CHROMIUM).exists():
        missing.append(f"Chromium at {CHROMIUM} (make system-deps)")
    if not (ROOT / "web" / "node_modules" / "playwright-core").is_dir():
        missing.append("web/node_modules/playwright-core (make web-deps)")
    if shutil.which("espeak-ng") is None:
        missing.append("espeak-ng (make system-deps)")
    if missing:
        pytest.fail("the browser test needs: " + ", ".join(missing))
    assert node is not None
    return node


def artifact(name: str) -> Path:
    """A fresh path for an artifact of this test run."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    path.unlink(missing_ok=True)
    return path


def spoken_question(path: Path, text: str, lead_s: float = 2.5, tail_s: float = 2.0) -> Path:
    """``text`` spoken by espeak-ng, after ``lead_s`` of silence (the page connects meanwhile) and before tail."""
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), text], check=True, timeout=30)
    with wave.open(str(raw)) as w:
        rate, speech = w.getframerate(), w.readframes(w.getnframes())
    pcm = np.concatenate([np.zeros(int(rate * lead_s), np.int16), np.frombuffer(speech, np.int16),
                          np.zeros(int(rate * tail_s), np.int16)])
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


async def drive(node: str, options: dict[str, Any], timeout_s: float = 100) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        node, str(DRIVER), json.dumps(options), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PLAYWRIGHT_BROWSERS_PATH": "0", "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"},
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"the browser driver did not finish in {timeout_s}s") from None
    lines = out.decode().strip().splitlines()
    assert proc.returncode == 0 and lines, f"driver failed ({proc.returncode}): {err.decode()[-2000:]}"
    return json.loads(lines[-1])


async def test_speaking_to_the_web_client_in_chromium(tmp_path: Path) -> None:
    node = _require_tools()
    screenshot = artifact("browser_e2e.png")
    wav = spoken_question(tmp_path / "question.wav", "What are your opening hours?")
    served = await serve(webrtc_settings(tmp_path))
    try:
        result = await drive(node, {
            "url": served.url, "persona": "web_teller", "wav": str(wav), "voice": True,
            "question": "I lost my card, what should I do?", "screenshot": str(screenshot), "chromium": CHROMIUM,
            "timeout_ms": 60000, "end": "reload",
        })
        assert result["ok"] and not result["errors"], json.dumps(result, indent=1)[-4000:]
        assert result["pair"], "Chromium reported no selected ICE candidate pair"
        assert result["pair"]["local"].startswith("127.0.0.1:") and result["pair"]["remote"].startswith("127.0.0.1:")
        assert "opening hours" in result["transcript"].lower()
        assert any("nine to five" in a for a in result["answers"]), result["answers"]
        assert any("block your card" in a for a in result["answers"]), result["answers"]
        assert any("web_teller.yaml" in s for s in result["sources"]), result["sources"]
        assert result["maxRemoteLevel"] > 0.01, "no answer audio reached the browser"
        assert result["label"] == "AI-generated"
        # the first bubble says that an AI answers, and it is spoken before the answer (whose words come later)
        assert result["firstBubble"] == {"cls": "msg bot disclosure",
                                         "text": "I'm Ava (web test), an AI assistant, not a person."}
        assert result["firstAudioAt"] is not None and result["firstWordAt"] is not None
        assert result["firstWordAt"] - result["firstAudioAt"] > 1500, result  # the disclosure: a few seconds
        assert {"ready", "transcript", "user_text", "delta", "answer", "state"} <= set(result["types"])
        assert screenshot.stat().st_size > 10_000

        # the page was refreshed: the session is gone, its record is kept (the spoken and the typed question)
        assert result["after_reload"] == {"connected": False, "state": "idle"}
        sid = result["session_id"]
        await until(lambda: sid not in served.fay.sessions and not served.transport.peers, 10, "the hang-up")
        records = served.fay.audit.read(sid)
        users = [r for r in records if r["kind"] == "user"]
        assert [u["source"] for u in users] == ["voice", "text"]
        assert sum(r["kind"] == "answer" for r in records) == 2
    finally:
        await served.server.close()


async def test_the_recording_notice_in_chromium(tmp_path: Path) -> None:
    """A persona that records: the notice shows after the disclosure; Accept records both sides of the call."""
    from fay_core.labels import read_label, verify

    node = _require_tools()
    wav = spoken_question(tmp_path / "question.wav", "What are your opening hours?", lead_s=4.0)
    settings = webrtc_settings(tmp_path)
    (settings.personas_dir / "recorded.yaml").write_text(
        (settings.personas_dir / "web_teller.yaml").read_text()
        + "recording:\n  enabled: true\n  notice:\n    en: May we record this call?\n")
    served = await serve(settings)
    try:
        result = await drive(node, {
            "url": served.url, "persona": "recorded", "wav": str(wav), "voice": True, "consent": True,
            "chromium": CHROMIUM, "timeout_ms": 60000, "end": "disconnect",
            "screenshot": str(artifact("browser_consent.png")),
        })
        assert result["ok"] and not result["errors"], json.dumps({k: result.get(k) for k in (
            "steps", "errors", "console", "types")}, indent=1)[-4000:]
        assert result["firstBubble"]["cls"] == "msg bot disclosure" and result["notice"] == "May we record this call?"
        assert result["recording"] == {"enabled": True, "consented": True, "active": True}
        sid = result["session_id"]
        await until(lambda: any(r["kind"] == "recording" for r in served.fay.audit.read(sid)), 10, "the recording")
        path = served.fay.settings.data_dir / "recordings" / "default" / f"{sid}.wav"
        label = read_label(path)
        assert label is not None and label.propagate_id == sid and verify(path)
        with wave.open(str(path)) as w:
            assert w.getnchannels() == 2 and w.getframerate() == 16000
            stereo = np.frombuffer(w.readframes(w.getnframes()), np.int16).reshape(-1, 2).astype(np.float32)
        loud = np.sqrt(np.mean(stereo**2, axis=0))
        assert loud[0] > 30 and loud[1] > 30, loud  # the customer (Chromium's fake microphone) and the avatar
        consent = [r for r in served.fay.audit.read(sid) if r["kind"] == "consent"]
        assert [(r["recording"], r["via"]) for r in consent] == [(True, "webrtc")]
    finally:
        await served.server.close()
