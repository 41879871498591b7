"""A look on request: the camera's latest frame and the question, over real HTTP through litellm, to a vision
model played by :class:`~fay_core.testing.FakeLLM`; the audit keeps the frame's hash, never its pixels; with no
look model, no frame or a failing model, the avatar says it cannot read documents here (English and Chinese).

The frames are scikit-image's public-domain ``astronaut()`` photo, placed by :mod:`fay_core.vision.scenes`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

import fay_opencv
from fay_core.app import Fay
from fay_core.events import CameraFrameReceived, FaceTracked
from fay_core.session import Session
from fay_core.settings import LLMSettings
from fay_core.testing import FakeLLM, Recorder, Reply, jpeg_size, test_settings
from fay_core.vision import LOOK_TOOL, is_look_request, scenes
from fay_core.vision.look import DEFAULT_CANNOT_READ

KIOSK_EN = """\
name: Ava
language: en
vision:
  enabled: true
  greet_on_arrival: false
"""
KIOSK_ZH = """\
name: 小安
language: zh
vision:
  enabled: true
  greet_on_arrival: false
"""
PLAIN = "name: Ava\nlanguage: en\n"


@asynccontextmanager
async def kiosk(tmp_path: Path, **settings: Any) -> AsyncIterator[Fay]:
    personas = tmp_path / "personas"
    personas.mkdir(exist_ok=True)
    for name, text in (("kiosk_en", KIOSK_EN), ("kiosk_zh", KIOSK_ZH), ("plain", PLAIN)):
        (personas / f"{name}.yaml").write_text(text, encoding="utf-8")
    async with Fay(test_settings(tmp_path / "data", personas_dir=personas, **settings)) as app:
        if "opencv" not in app.plugins.engines["vision"]:  # (an install older than this plugin's entry point)
            app.plugins.register(fay_opencv, "opencv")
        yield app


async def show(app: Fay, session: Session, *frames: tuple[np.ndarray, float]) -> None:
    """Send camera frames as the transport does, through the session's vision watcher."""
    app.assembly.add_vision(session)
    rec = Recorder(session.bus, FaceTracked)
    for image, pts in frames:
        session.bus.publish(CameraFrameReceived(session_id=session.id, image=image, pts=pts))
        await rec.wait(FaceTracked, lambda e, t=pts: e.pts == t, within=10)


def look_call(app: Fay, session: Session) -> dict[str, Any]:
    answer = [r for r in app.audit.read(session.id) if r["kind"] == "answer"][-1]
    calls = [t for t in answer["tools"] if t["name"] == LOOK_TOOL]
    assert len(calls) == 1
    return calls[0]


@pytest.mark.parametrize("question", [
    "What is this?", "what's that", "Hello, what is this letter?", "Can you read this letter?",
    "Could you please look at this for me?", "What does this say?", "What am I holding?",
    "看看这个是什么", "帮我看一下这封信", "这是什么？", "这张卡上写的是什么", "你能看到我手里的东西吗",
])
def test_look_phrases_are_recognised_in_both_languages(question: str) -> None:
    assert is_look_request(question)


@pytest.mark.parametrize("question", [
    "What is the interest rate?", "What is this month's fee?", "What is this fee for?", "Can you check my "
    "statement?", "Can you see my balance?", "When do you open?",
    "帮我看看这个月的交易", "这个月的利率是多少", "我看到账单多了一笔", "请问定期存款利率是多少", "我想开户",
])
def test_unrelated_questions_are_not_hijacked(question: str) -> None:
    assert not is_look_request(question)


async def test_offline_look_sends_the_latest_frame_and_audits_only_its_hash(tmp_path: Path) -> None:
    async with FakeLLM() as eyes, kiosk(tmp_path, vision={"look_model": eyes.model, "look_api_base": eyes.url}) as app:
        session = await app.create_session("kiosk_en")
        first, latest = scenes.frame(-0.5), scenes.frame(0.5)
        await show(app, session, (first, 1.0), (latest, 1.5))
        finished = await session.answer("Can you read this letter?")
        assert finished.answered_by == "offline" and not finished.declined
        assert finished.text == "I see a picture, 640 by 480 pixels."  # the fake's description of the JPEG sent
        assert len(eyes.requests) == 1 and len(eyes.images) == 1
        jpeg = eyes.images[0]
        user = eyes.requests[0]["messages"][-1]["content"]
        assert user[0] == {"type": "text", "text": "Can you read this letter?"}
        assert user[1]["image_url"]["url"].startswith("data:image/jpeg;base64,")
        # the frame sent is the latest one (the face on the right), not the first
        sent = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).astype(int)
        assert np.abs(sent - latest).mean() < 4 < np.abs(sent - first).mean()
        call = look_call(app, session)
        frame = call["artifact"]["frame"]
        assert frame["sha256"] == hashlib.sha256(jpeg).hexdigest() and frame["bytes"] == len(jpeg)
        assert (frame["width"], frame["height"], frame["pts"]) == (640, 480, 1.5) and frame["taken_at"]
        assert call["artifact"]["model"] == eyes.model and call["artifact"]["error"] == ""
        assert call["result"] == finished.text
        log = json.dumps(app.audit.read(session.id))
        assert "base64" not in log and user[1]["image_url"]["url"][23:80] not in log  # no pixels in the audit
        # a question that is not a look goes to the knowledge as before, with no image sent
        other = await session.answer("When do you open?")
        assert other.declined and len(eyes.requests) == 1


async def test_chinese_look_asks_in_chinese(tmp_path: Path) -> None:
    async with FakeLLM() as eyes, kiosk(tmp_path, vision={"look_model": eyes.model, "look_api_base": eyes.url}) as app:
        eyes.enqueue("这是一封银行寄来的信，提醒您信用卡将于五月到期。")
        session = await app.create_session("kiosk_zh")
        await show(app, session, (scenes.frame(0.0), 0.5))
        finished = await session.answer("帮我看一下这封信")
        assert finished.text == "这是一封银行寄来的信，提醒您信用卡将于五月到期。"
        system = eyes.requests[0]["messages"][0]["content"]
        assert "小安" in system and "中文" in system
        assert look_call(app, session)["artifact"]["frame"]["sha256"] == hashlib.sha256(eyes.images[0]).hexdigest()


@pytest.mark.parametrize(("persona", "question"), [("kiosk_en", "What is this?"), ("kiosk_zh", "看看这个是什么")])
async def test_without_a_look_model_it_says_it_cannot_read_documents(tmp_path: Path, persona: str,
                                                                      question: str) -> None:
    async with kiosk(tmp_path) as app:
        session = await app.create_session(persona)
        await show(app, session, (scenes.frame(0.0), 0.5))
        finished = await session.answer(question)
        lang = persona[-2:]
        assert finished.text == DEFAULT_CANNOT_READ[lang] and finished.declined
        assert ("staff" in finished.text) if lang == "en" else ("工作人员" in finished.text)
        call = look_call(app, session)
        assert call["artifact"]["frame"] is None and "vision.look_model" in call["error"]


async def test_camera_off_dead_endpoint_and_slow_model_give_the_spoken_fallback(tmp_path: Path) -> None:
    async with FakeLLM() as eyes, kiosk(tmp_path, vision={"look_model": eyes.model, "look_api_base": eyes.url}) as app:
        session = await app.create_session("kiosk_en")
        # the camera is off (no frame yet): nothing is sent
        finished = await session.answer("What is this?")
        assert finished.text == DEFAULT_CANNOT_READ["en"] and not eyes.requests
        assert "no camera frame" in look_call(app, session)["error"]
        await show(app, session, (scenes.frame(0.0), 0.5))
        # (a first look within the default timeout: litellm's first request sets up its client for seconds)
        assert (await session.answer("What is this?")).text == "I see a picture, 640 by 480 pixels."
        eyes.enqueue(Reply(""))  # a model answering nothing
        await show(app, session, (scenes.frame(0.0), 1.0))  # (a fresh frame: the first look took seconds)
        assert (await session.answer("What is this?")).text == DEFAULT_CANNOT_READ["en"]
        assert look_call(app, session)["error"] == "the look model answered nothing"
        # a model slower than vision.look_timeout_s (read when a session is built)
        app.settings.vision.look_timeout_s = 1.0
        session = await app.create_session("kiosk_en")
        await show(app, session, (scenes.frame(0.0), 0.5))
        eyes.enqueue(Reply("Too late.", first_token_delay=2.5))
        finished = await session.answer("What is this?")
        assert finished.text == DEFAULT_CANNOT_READ["en"] and finished.declined
        call = look_call(app, session)
        assert "no output within vision.look_timeout_s (1 s)" in call["error"]
        # the same frame, so the same JPEG as the first look's
        assert call["artifact"]["frame"]["sha256"] == hashlib.sha256(eyes.images[0]).hexdigest()
        # a port nobody listens on: connection refused
        app.settings.vision.look_api_base = "http://127.0.0.1:9/v1"
        session = await app.create_session("kiosk_zh")
        await show(app, session, (scenes.frame(0.0), 0.5))
        finished = await session.answer("这是什么？")
        assert finished.text == DEFAULT_CANNOT_READ["zh"]
        error = look_call(app, session)["error"]
        assert "look model failed" in error and "FAY_VISION__LOOK_API_BASE" in error


async def test_the_llm_calls_the_look_tool_and_only_vision_personas_offer_it(tmp_path: Path) -> None:
    async with FakeLLM() as chat, FakeLLM() as eyes, kiosk(
        tmp_path, llm=LLMSettings(model=chat.model, api_base=chat.url),  # (the chat LLM's first call may take
        vision={"look_model": eyes.model, "look_api_base": eyes.url, "look_max_age_s": 60},  # seconds, cold)
    ) as app:
        chat.enqueue(Reply(tool_calls=[{"name": LOOK_TOOL, "arguments": {"question": "what is this card?"}}]),
                     "That is your debit card; its chip is on the front.")
        eyes.enqueue("A blue bank card held up to the camera, chip on the left.")
        session = await app.create_session("kiosk_en")
        await show(app, session, (scenes.frame(0.0), 0.5))
        finished = await session.answer("Hm, tell me about this card I have here.")
        assert finished.answered_by == "llm" and finished.text == "That is your debit card; its chip is on the front."
        assert LOOK_TOOL in [t["function"]["name"] for t in chat.requests[0]["tools"]]
        tool_message = chat.requests[1]["messages"][-1]
        assert tool_message["role"] == "tool"
        assert tool_message["content"] == "A blue bank card held up to the camera, chip on the left."
        assert not chat.images and len(eyes.images) == 1  # the image went to the look model only
        assert "sha256" not in json.dumps(chat.requests[1])  # the artifact is the audit's, not the model's
        call = look_call(app, session)
        assert call["arguments"] == {"question": "what is this card?"}
        assert call["artifact"]["frame"]["sha256"] == hashlib.sha256(eyes.images[0]).hexdigest()
        assert jpeg_size(eyes.images[0]) == (640, 480)
        plain = await app.create_session("plain")
        await plain.answer("What is this?")
        assert "tools" not in chat.requests[-1] and plain.frames is None
