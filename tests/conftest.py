"""Shared fixtures. Tests never read the developer's .env, fay.yaml or data folder, and never reach the network."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
for key in [k for k in os.environ if k.startswith("FAY_")]:
    del os.environ[key]

from fay_core.app import Fay  # noqa: E402
from fay_core.knowledge import KnowledgeBase  # noqa: E402
from fay_core.settings import Settings  # noqa: E402
from fay_core.testing import FakeLLM, test_settings  # noqa: E402
from fay_e5.fast import FastE5Embedder  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"

#: test files that measure timing against a real clock (lip-sync offsets in headless Chromium, whose software WebGL
#: takes about a core; real-time audio bounds; the soak; cluster heartbeats that expire): ``make test`` runs them
#: after the rest, alone, because on a two-core CI machine a second worker's load makes their clocks lie
SERIAL_FILES = {"test_avatar.py", "test_avatar_browser.py", "test_browser.py", "test_browser_zh.py",
                "test_vision_browser.py", "test_roleplay_report_browser.py", "test_console_browser.py",
                "test_webrtc.py", "test_soak.py", "test_cluster.py"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """For ``make test``: the timing files are marked ``serial`` (run in a second, single-process pass). The first
    pass keeps each test file on one worker with ``--dist loadfile`` (its module fixtures are built once and its
    tests run in order). Not ``xdist_group`` marks with ``--dist loadgroup``: pytest-xdist 3.8 writes the group into
    ``item._nodeid``, which pytest 9 no longer reads, so the groups were silently ignored."""
    for item in items:
        if item.path.name in SERIAL_FILES:
            item.add_marker(pytest.mark.serial)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return test_settings(tmp_path / "data", personas_dir=ROOT / "personas")


@pytest.fixture
async def fay(settings: Settings) -> AsyncIterator[Fay]:
    async with Fay(settings) as app:
        yield app


@pytest.fixture
async def fake_llm() -> AsyncIterator[FakeLLM]:
    async with FakeLLM() as server:
        yield server


@pytest.fixture(scope="session")
def shared_data() -> Path:
    data = SHARED / "data"
    if not data.is_dir():
        pytest.fail(f"evaluation data not found at {data}: the tests expect ../shared/data beside the checkout")
    return data


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # loopback traffic must never go through a proxy a developer has configured
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(key, raising=False)
    yield


@pytest.fixture(scope="session")
def knowledge_seed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``knowledge`` folder with every shipped persona's knowledge ingested (and its intent models trained), built
    once per test process: what a ``fay`` process finds after its first start."""
    data = tmp_path_factory.mktemp("seed") / "data"
    app = Fay(test_settings(data, personas_dir=ROOT / "personas"))
    for persona_id in app.personas.ids():
        persona = app.personas.get(persona_id)
        if persona.knowledge.paths or persona.knowledge.faq:
            app.knowledge.prepare(persona)
    app.knowledge.close()
    return data / "knowledge"


@pytest.fixture
def seeded_data(tmp_path: Path, knowledge_seed: Path) -> Path:
    """``tmp_path / "data"`` holding a copy of :func:`knowledge_seed`, for tests that start ``fay`` processes on
    that data folder: they skip the first start's ingest (15-20 s of embedding and training on two cores) and
    still run on their own copy."""
    data = tmp_path / "data"
    shutil.copytree(knowledge_seed, data / "knowledge")
    return data


@pytest.fixture(scope="session")
def embedder() -> FastE5Embedder:
    """The default embedder (real e5-fast), loaded once for the run."""
    return FastE5Embedder()


@pytest.fixture
def kb(tmp_path: Path, embedder: FastE5Embedder) -> Iterator[KnowledgeBase]:
    """An empty knowledge base on disk with default settings."""
    base = KnowledgeBase(tmp_path / "knowledge", embedder)
    yield base
    base.close()

