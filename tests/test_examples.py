"""Every example imports, and the offline ones run and do what their docstring says."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem.replace("-", "_"), path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.py")), ids=lambda p: p.name)
def test_example_imports_and_has_a_docstring(path: Path) -> None:
    module = _load(path)
    assert (module.__doc__ or "").strip(), f"{path.name} needs an opening docstring"


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FAY_DATA_DIR", str(tmp_path / "data"))


async def test_text_chat_example_answers_offline_with_a_source(isolated: None) -> None:
    finished = await _load(EXAMPLES / "01_text_chat.py").main("What are your opening hours?")
    assert "Monday" in finished.text and finished.citations


async def test_inline_plugin_example_sees_events_and_adds_its_tool(isolated: None) -> None:
    seen = await _load(EXAMPLES / "02_inline_plugin.py").main()
    assert seen["UserTextReceived"] == 1 and seen["AgentTurnFinished"] == 1


async def test_http_client_example_against_a_live_server(settings) -> None:  # type: ignore[no-untyped-def]
    from aiohttp.test_utils import TestServer

    from fay_core.app import Fay
    from fay_core.server import create_app

    server = TestServer(create_app(Fay(settings)), host="127.0.0.1")
    await server.start_server()
    try:
        base = str(server.make_url("")).rstrip("/")
        answer = await _load(EXAMPLES / "03_http_client.py").main("I lost my card, what should I do?", base)
    finally:
        await server.close()
    assert "Freeze" in answer
