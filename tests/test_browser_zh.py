"""End to end in Mandarin with a real browser: Chromium's fake microphone asks a question in Chinese (spoken by the
kokoro voice), the Chinese teller answers from its knowledge with a source, and speaks the answer with the offline
Mandarin default (gcin's recorded syllables; kokoro where the gcin-voice package is not installed).

Same network rules and driver as ``test_browser.py`` (loopback only). Screenshot: ``browser_e2e_zh.png`` under
``build/test-artifacts/`` (or ``$FAY_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import asyncio
import json
import wave
from pathlib import Path

import numpy as np
import pytest
from test_browser import CHROMIUM, _require_tools, artifact, drive
from test_webrtc import LOOPBACK, serve

import fay_gcin
import fay_kokoro
from fay_core.testing import test_settings
from fay_kokoro import KokoroTTS

pytestmark = pytest.mark.slow

PERSONA_ZH = """\
name: 小海（网页测试）
language: zh
voice: {engine: auto, fallback: [espeak]}
avatar:
  renderer: none
knowledge:
  only: true
  faq:
    - id: opening-hours
      question: 你们的营业时间是什么？
      answer: 我们的网点周一至周五上午九点到下午五点营业。
    - id: card-lost
      question: 我的银行卡丢了怎么办？
      answer: 请马上联系我们挂失，我们会为您补办新卡。
greeting: 您好，我是小海，请问有什么可以帮您？
"""


async def spoken_question_zh(path: Path, text: str, lead_s: float = 2.5, tail_s: float = 2.0) -> Path:
    """``text`` spoken by the kokoro voice between silences (the page connects during the lead)."""
    chunks = [c async for c in KokoroTTS().synthesize(text, language="zh")]
    rate = chunks[0].sample_rate
    speech = np.frombuffer(b"".join(c.pcm for c in chunks), np.int16)
    pcm = np.concatenate([np.zeros(int(rate * lead_s), np.int16), speech, np.zeros(int(rate * tail_s), np.int16)])
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


async def test_speaking_mandarin_to_the_web_client_in_chromium(tmp_path: Path) -> None:
    node = _require_tools()
    screenshot = artifact("browser_e2e_zh.png")
    wav = await spoken_question_zh(tmp_path / "question_zh.wav", "请问你们的营业时间是什么？")
    personas = tmp_path / "personas"
    personas.mkdir()
    (personas / "web_teller_zh.yaml").write_text(PERSONA_ZH, encoding="utf-8")
    settings = test_settings(tmp_path / "data", personas_dir=personas, default_persona="web_teller_zh",
                             webrtc=LOOPBACK)
    settings.voice.tts.online = "never"
    served = await serve(settings)
    plugins = served.fay.plugins
    for module, name in ((fay_gcin, "gcin"), (fay_kokoro, "kokoro")):
        if name not in plugins.names("tts"):  # this checkout's install predates the plugin's entry point
            plugins.register(module, name)
    voice = plugins.engine("tts", "gcin" if fay_gcin.PACKAGED_DIR.is_dir() else "kokoro")

    def spoken() -> int:
        return voice.chunks_spoken if isinstance(voice, fay_gcin.GcinTTS) else voice.pieces_synthesized
    try:
        result = await drive(node, {
            "url": served.url, "persona": "web_teller_zh", "wav": str(wav), "voice": True,
            "screenshot": str(screenshot), "chromium": CHROMIUM, "timeout_ms": 90000, "end": "disconnect",
        }, timeout_s=150)
        assert result["ok"] and not result["errors"], json.dumps(result, ensure_ascii=False, indent=1)[-4000:]
        assert result["pair"]["local"].startswith("127.0.0.1:") and result["pair"]["remote"].startswith("127.0.0.1:")
        assert "营业" in result["transcript"], result["transcript"]
        assert any("九点到下午五点" in a for a in result["answers"]), result["answers"]
        assert any("web_teller_zh.yaml" in s for s in result["sources"]), result["sources"]
        assert result["maxRemoteLevel"] > 0.01, "no answer audio reached the browser"
        assert spoken() > 0  # the session spoke (greeting, answer) with the offline Mandarin default
        assert screenshot.stat().st_size > 10_000
    finally:
        await asyncio.wait_for(served.server.close(), 30)
