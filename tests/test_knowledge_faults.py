"""A damaged knowledge store heals or says so; a failing retriever gives the persona's decline, never silence.

Real SQLite and Chroma on disk, the real e5-fast embedder, the demo bank's FAQ; store files truncated or overwritten
with garbage between two runtimes, as a full disk or a killed copy leaves them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from fay_core.app import Fay
from fay_core.brain.offline import decline_text
from fay_core.events import ErrorRaised
from fay_core.knowledge import Knowledge, open_knowledge
from fay_core.persona import PersonaStore
from fay_core.plugins import Plugins
from fay_core.server import create_app
from fay_core.settings import LLMSettings, Settings
from fay_core.testing import FakeLLM, Recorder, Reply, test_settings

ROOT = Path(__file__).resolve().parent.parent
HOURS = "open Monday to Friday from 9:00 to 17:00"


def teller(collection: str, *, paths: bool = True, only: bool = True) -> str:
    return f"""\
name: Test teller
language: en
knowledge:
  collections: [{collection}]
  paths: {"[kb]" if paths else "[]"}
  only: {str(only).lower()}
  handoff: Sorry, I can't answer that right now. Shall I connect you with a colleague?
"""


@pytest.fixture(scope="module")
def personas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("faults") / "personas"
    (folder / "kb").mkdir(parents=True)
    faq = (ROOT / "knowledge" / "demo_bank" / "en" / "faq.yaml").read_text(encoding="utf-8")
    (folder / "kb" / "faq.yaml").write_text(faq[: faq.index("  - id: hb-en-009")], encoding="utf-8")  # keeps it fast
    (folder / "teller.yaml").write_text(teller("test-bank"), encoding="utf-8")
    (folder / "ingested.yaml").write_text(teller("ops-ingested", paths=False), encoding="utf-8")
    (folder / "open.yaml").write_text(teller("test-bank", only=False), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def built(personas: Path) -> Path:
    """A sound store holding the teller's collection, built once; each test works on its own copy."""
    data = personas.parent / "built"
    settings = test_settings(data, personas_dir=personas)
    knowledge = Knowledge(settings, Plugins(settings).load())
    knowledge.prepare(PersonaStore(personas).get("teller"))
    knowledge.close()
    return data


@pytest.fixture
def settings(tmp_path: Path, personas: Path, built: Path) -> Settings:
    shutil.copytree(built, tmp_path / "data")
    return test_settings(tmp_path / "data", personas_dir=personas)


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if how == "truncated" else b"\x8f garbage, not a database \x00" * 64)


async def answer(fay: Fay, persona: str, question: str = "What are your opening hours?") -> Any:
    session = await fay.create_session(persona)
    return await session.answer(question)


@pytest.mark.parametrize("how", ["truncated", "garbage"])
@pytest.mark.parametrize("name", ["knowledge.sqlite3", "chroma/chroma.sqlite3"])
async def test_a_damaged_store_is_moved_aside_and_rebuilt(settings: Settings, name: str, how: str) -> None:
    root = settings.data_dir / "knowledge"
    damage(root / name, how)
    async with Fay(settings) as fay:
        assert fay.knowledge.status().state == "ok"  # nothing opened yet
        done = await answer(fay, "teller")
        status = fay.knowledge.status()
        fay.knowledge.close()
    assert HOURS in done.text and done.citations and not done.error
    assert status.state == "rebuilt" and status.ready and status.moved_to is not None
    assert status.moved_to.name.startswith("knowledge.corrupt-")
    assert (status.moved_to / name).is_file()  # kept for the bank, never deleted


async def test_a_store_emptied_to_nothing_is_rebuilt(settings: Settings) -> None:
    (settings.data_dir / "knowledge" / "knowledge.sqlite3").write_bytes(b"")  # a valid, empty database
    async with Fay(settings) as fay:
        done = await answer(fay, "teller")
        assert fay.knowledge.status().state == "rebuilt"
        fay.knowledge.close()
    assert HOURS in done.text


def lose_the_ingested_collection(settings: Settings) -> None:
    """A collection filled the way `fay kb ingest knowledge/... --collection ops-ingested` does, then a damaged
    store (which loses it: no persona file can rebuild it), and the persona that needs it as the default."""
    kb = open_knowledge(settings, Plugins(settings).load())
    kb.ingest([settings.personas_dir / "kb" / "faq.yaml"], "ops-ingested")
    kb.close()
    damage(settings.data_dir / "knowledge" / "knowledge.sqlite3", "garbage")
    settings.default_persona = "ingested"


async def test_a_lost_ingested_collection_makes_ready_503_until_ingested_again(settings: Settings) -> None:
    lose_the_ingested_collection(settings)
    fay = Fay(settings)
    server = TestServer(create_app(fay), host="127.0.0.1")
    await server.start_server()
    try:
        async with ClientSession(base_url=str(server.make_url(""))) as http:
            await fay.warm_up()  # as `fay run` does: opens, checks and prepares the default persona
            async with http.get("/health") as r:
                assert r.status == 200 and (await r.json())["knowledge"] == "degraded"
            async with http.get("/ready") as r:
                body = await r.json()
                assert r.status == 503 and not body["ready"] and body["knowledge"] == "degraded"
                assert "ops-ingested" in body["reason"] and "fay kb ingest" in body["reason"]
                assert str(settings.data_dir) not in body["reason"]  # no server paths
            done = await answer(fay, "ingested")
            assert done.text == decline_text(fay.personas.get("ingested"))
            kb = fay.knowledge.base()
            kb.ingest([settings.personas_dir / "kb" / "faq.yaml"], "ops-ingested")  # an operator ingests it again
            assert HOURS in (await answer(fay, "ingested")).text
            async with http.get("/ready") as r:
                assert r.status == 200 and (await r.json())["knowledge"] == "rebuilt"
            fay.knowledge.close()
    finally:
        await server.close()


async def test_ready_checks_a_store_nobody_opened_and_says_503_while_warming_up(settings: Settings) -> None:
    """Before the warm-up or any session, ``/ready`` opens and checks the store itself (it said 200 for a damaged
    store that nobody had opened); while the warm-up runs it says 503."""
    lose_the_ingested_collection(settings)
    fay = Fay(settings)
    server = TestServer(create_app(fay), host="127.0.0.1")
    await server.start_server()
    try:
        async with ClientSession(base_url=str(server.make_url(""))) as http:
            assert not fay.knowledge.opened
            async with http.get("/ready") as r:  # no warm-up, no session yet
                body = await r.json()
                assert r.status == 503 and body["knowledge"] == "degraded" and "ops-ingested" in body["reason"]
            fay.warming = True  # what Fay.warm_up sets while it runs
            async with http.get("/ready") as r:
                assert r.status == 503 and "warming up" in (await r.json())["reason"]
                assert r.headers["Retry-After"]
            fay.knowledge.close()
    finally:
        await server.close()


class Exploding:
    """A knowledge base whose searches and text reads raise what a damaged store raises (not a FayError)."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def search(self, *args: Any, **kwargs: Any) -> Any:
        raise self.exc

    def text_of(self, *args: Any, **kwargs: Any) -> Any:  # the assessor reads the words before it searches
        raise self.exc


@pytest.mark.parametrize("exc", [RuntimeError("boom"), ValueError("bad vector")])
async def test_an_exploding_retriever_gives_the_decline_offline(settings: Settings, exc: Exception) -> None:
    async with Fay(settings) as fay:
        fay.knowledge.prepare(fay.personas.get("teller"))
        fay.knowledge._base = Exploding(exc)  # type: ignore[assignment]
        session = await fay.create_session("teller")
        errors = Recorder(session.bus, ErrorRaised)
        done = await session.answer("What are your opening hours?")
        fay.knowledge._base = None
    assert done.text == decline_text(fay.personas.get("teller")) and not done.citations
    assert [(e.source, e.error_type) for e in errors.of(ErrorRaised)] == [("knowledge", type(exc).__name__)]


async def test_an_exploding_retriever_with_an_llm(settings: Settings, fake_llm: FakeLLM) -> None:
    settings.llm = LLMSettings(model=fake_llm.model, api_base=fake_llm.url, retries=0)
    fake_llm.enqueue(Reply("We are open on weekdays, I believe."))
    async with Fay(settings) as fay:
        fay.knowledge.prepare(fay.personas.get("teller"))
        fay.knowledge._base = Exploding(RuntimeError("boom"))  # type: ignore[assignment]
        only = await fay.create_session("teller")
        errors = Recorder(only.bus, ErrorRaised)
        declined = await only.answer("What are your opening hours?")
        free = await answer(fay, "open")
        fay.knowledge._base = None
    # knowledge-only: the decline, without asking the LLM; otherwise the LLM answers, without sources
    assert declined.text == decline_text(fay.personas.get("teller")) and declined.answered_by == "guardrail"
    assert [e.source for e in errors.of(ErrorRaised)] == ["knowledge"]
    assert free.text == "We are open on weekdays, I believe." and free.answered_by == "llm" and not free.citations
    assert len(fake_llm.requests) == 1


def test_fay_kb_checks_the_store_as_the_server_does(settings: Settings) -> None:
    """``fay kb`` opened the store unchecked: on a damaged one it failed or worked on garbage."""
    kb = open_knowledge(settings, Plugins(settings).load())
    kb.ingest([settings.personas_dir / "kb" / "faq.yaml"], "ops-ingested")
    kb.close()
    damage(settings.data_dir / "knowledge" / "chroma" / "chroma.sqlite3", "garbage")  # the manifest survives
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAY_")}
    env.update(FAY_DATA_DIR=str(settings.data_dir), FAY_PERSONAS_DIR=str(settings.personas_dir))
    run = subprocess.run([sys.executable, "-m", "fay_core", "kb", "list"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert "moved aside" in run.stderr and "ops-ingested" in run.stderr, run.stderr
    assert list(settings.data_dir.glob("knowledge.corrupt-*")), "the failed store is kept, not deleted"
