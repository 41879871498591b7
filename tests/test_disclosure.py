"""Telling the customer first that an AI serves them: over HTTP, in the first answer stream, audited, reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from fay_core.app import Fay
from fay_core.disclosure import DEFAULT_DISCLOSURE, disclosure_text
from fay_core.errors import PersonaError
from fay_core.persona import parse_persona
from fay_core.server import create_app
from fay_core.testing import test_settings

ROOT = Path(__file__).resolve().parent.parent

TELLER = """\
name: Mia
language: en
knowledge:
  faq:
    - question: What are your opening hours?
      answer: We are open from nine to five.
"""


def sse(body: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[ClientSession, Fay, Path]]:
    personas = tmp_path / "personas"
    personas.mkdir()
    (personas / "mia.yaml").write_text(TELLER)
    (personas / "mia_zh.yaml").write_text(TELLER.replace("language: en", "language: zh").replace("Mia", "小美"))
    (personas / "custom.yaml").write_text(TELLER + "disclosure:\n  en: This is Harbor Bank's virtual assistant.\n"
                                                   "  zh: 这是海港银行的虚拟助手。\n")
    fay = Fay(test_settings(tmp_path / "data", personas_dir=personas, default_persona="mia"))
    server = TestServer(create_app(fay), host="127.0.0.1")
    await server.start_server()
    async with ClientSession(base_url=str(server.make_url(""))) as http:
        yield http, fay, personas
    await server.close()


async def ask(http: ClientSession, sid: str, text: str) -> list[dict[str, Any]]:
    async with http.post(f"/api/sessions/{sid}/messages", json={"text": text}) as r:
        assert r.status == 200, await r.text()
        return sse(await r.text())


async def test_the_first_answer_stream_starts_with_the_disclosure_once(served) -> None:
    http, fay, _ = served
    async with http.post("/api/sessions", json={"persona": "mia"}) as r:
        created = await r.json()
    sid = created["session_id"]
    expected = "I'm Mia, an AI assistant, not a person."
    assert created["disclosure"] == expected and created["recording"] == {"enabled": False}

    first = await ask(http, sid, "What are your opening hours?")
    assert first[0] == {"type": "disclosure", "turn": 0, "text": expected, "language": "en"}
    assert [m["type"] for m in first[1:]].count("disclosure") == 0 and first[-2]["type"] == "answer"
    second = await ask(http, sid, "What are your opening hours?")
    assert "disclosure" not in [m["type"] for m in second] and second[0]["type"] == "delta"

    records = fay.audit.read(sid)
    kinds = [r["kind"] for r in records]
    assert kinds.count("disclosure") == 1 and kinds.index("disclosure") < kinds.index("answer")
    disclosed = records[kinds.index("disclosure")]
    assert disclosed["text"] == expected and disclosed["via"] == "stream" and disclosed["persona"] == "mia"

    async with http.get(f"/api/sessions/{sid}") as r:
        ai = (await r.json())["ai"]
    assert ai["served_by"] == "ai" and ai["disclosure"] == expected and ai["disclosed"] == ["stream"]
    assert "AIGC" in ai["labels"]["implicit"] and ai["recording"]["enabled"] is False


async def test_the_default_follows_the_language_and_a_persona_overrides_it(served) -> None:
    http, fay, _ = served
    async with http.post("/api/sessions", json={"persona": "mia_zh"}) as r:
        sid = (await r.json())["session_id"]
    first = (await ask(http, sid, "营业时间"))[0]
    assert first["type"] == "disclosure" and first["language"] == "zh"
    assert first["text"] == DEFAULT_DISCLOSURE["zh"].format(name="小美") and "不是真人" in first["text"]

    async with http.post("/api/sessions", json={"persona": "custom"}) as r:
        created = await r.json()
    assert created["disclosure"] == "This is Harbor Bank's virtual assistant."
    assert (await ask(http, created["session_id"], "hours?"))[0]["text"] == created["disclosure"]


async def test_a_session_that_showed_it_already_does_not_repeat_it(served) -> None:
    _, fay, _ = served
    session = await fay.create_session("mia")
    session.disclosure.deliver("webrtc")  # what the data channel's ready does
    kinds = [type(e).__name__ async for e in session.ask("What are your opening hours?")]
    assert "AgentDisclosed" not in kinds and kinds[-1] == "AgentTurnFinished"
    assert [r["via"] for r in fay.audit.read(session.id) if r["kind"] == "disclosure"] == ["webrtc"]


def test_disclosure_fields_are_validated_and_cannot_be_switched_off(tmp_path: Path) -> None:
    empty = parse_persona("name: Ann\ndisclosure: ''\n", tmp_path / "ann.yaml")
    assert disclosure_text(empty) == DEFAULT_DISCLOSURE["en"].format(name="Ann")
    only_zh = parse_persona("name: Ann\nlanguage: en\ndisclosure: {zh: 我是AI。}\n", tmp_path / "ann.yaml")
    assert disclosure_text(only_zh) == "我是AI。"  # the persona's own words beat a default in another language
    with pytest.raises(PersonaError) as err:
        parse_persona("name: Ann\ndisclosure:\n  fr: Je suis une IA.\n", tmp_path / "ann.yaml")
    assert "ann.yaml:3: disclosure" in str(err.value)
    with pytest.raises(PersonaError) as err:
        parse_persona("name: Ann\nrecording:\n  enabled: true\n  keep_days: 3\n", tmp_path / "ann.yaml")
    assert "ann.yaml:4: recording.keep_days: unknown field" in str(err.value)


def test_fay_chat_prints_the_disclosure_first(tmp_path: Path, seeded_data: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAY_")}
    env.update(FAY_DATA_DIR=str(tmp_path / "data"), HOME=str(tmp_path))
    run = subprocess.run([sys.executable, "-m", "fay_core", "chat", "--persona", "bank_teller_en", "--json"],
                         input="What are your opening hours?\n", env=env, capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    first = json.loads(run.stdout.splitlines()[0])
    assert first["type"] == "disclosure" and "not a person" in first["text"]
