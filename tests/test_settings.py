"""Settings: FAY_ environment, nested __, .env, fay.yaml, per-plugin sections, errors that name the setting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from fay_core import hookimpl
from fay_core.errors import ConfigError, EngineUnavailable
from fay_core.hookspecs import RegisterEngine
from fay_core.plugins import Plugins
from fay_core.settings import load_settings


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FAY_CONFIG", raising=False)
    return tmp_path


def test_environment_with_nested_delimiter(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAY_SERVER__PORT", "9123")
    monkeypatch.setenv("FAY_LLM__MODEL", "openai/gpt-4o-mini")
    monkeypatch.setenv("FAY_DATA_DIR", str(workdir / "d"))
    s = load_settings()
    assert s.server.port == 9123 and s.llm.model == "openai/gpt-4o-mini" and s.data_dir == workdir / "d"


def test_dotenv_and_yaml_with_environment_winning(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (workdir / "fay.yaml").write_text("server:\n  port: 7001\n  max_sessions: 3\ndefault_persona: bank_teller_zh\n")
    (workdir / ".env").write_text("FAY_SERVER__MAX_SESSIONS=5\n")
    monkeypatch.setenv("FAY_DEFAULT_PERSONA", "interviewer_en")
    s = load_settings()
    assert s.server.port == 7001  # yaml
    assert s.server.max_sessions == 5  # .env beats yaml
    assert s.default_persona == "interviewer_en"  # environment beats both


def test_config_file_can_be_named(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (workdir / "prod.yaml").write_text("server:\n  host: 0.0.0.0\n")
    monkeypatch.setenv("FAY_CONFIG", str(workdir / "prod.yaml"))
    assert load_settings().server.host == "0.0.0.0"


def test_invalid_setting_is_named_with_its_variable(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAY_SERVER__PORT", "eighty")
    with pytest.raises(ConfigError, match=r"server\.port \(FAY_SERVER__PORT\): Input should be a valid integer"):
        load_settings()


def test_unknown_setting_in_yaml_is_refused(workdir: Path) -> None:
    (workdir / "fay.yaml").write_text("server:\n  prot: 80\n")
    with pytest.raises(ConfigError, match=r"server\.prot \(FAY_SERVER__PROT\): Extra inputs are not permitted"):
        load_settings()


class UnitsSettings(BaseModel):
    units: str = "metric"
    days: int = 3


class UnitsPlugin:
    @hookimpl
    def register_settings(self, register):  # type: ignore[no-untyped-def]
        register("units", UnitsSettings)


def test_plugin_settings_are_validated_at_start(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAY_PLUGINS__UNITS__DAYS", "many")
    plugins = Plugins(load_settings()).load(only="none")
    plugins.register(UnitsPlugin(), "units")
    with pytest.raises(ConfigError, match=r"plugins\.units\.days \(FAY_PLUGINS__UNITS__DAYS\)"):
        plugins.check_settings()


def test_settings_for_an_unknown_plugin_are_refused(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAY_PLUGINS__NOPE__X", "1")
    plugins = Plugins(load_settings()).load(only="none")
    with pytest.raises(ConfigError, match="unknown plugin.*nope"):
        plugins.check_settings()


class Recogniser:
    def __init__(self, name: str) -> None:
        self.name = name


def unavailable() -> Recogniser:
    raise EngineUnavailable("its model is not on this machine")


class SpeechEngines:
    """ASR engines with metadata only: who ``auto`` picks depends on nothing else."""

    @hookimpl
    def register_asr_engines(self, register: RegisterEngine) -> None:
        register("mandarin", lambda: Recogniser("mandarin"), languages=("zh",), priority=80)
        register("cloud", lambda: Recogniser("cloud"), online=True, priority=90)
        register("broken", unavailable, priority=100)
        register("any", lambda: Recogniser("any"), priority=10)
        register("fallback", lambda: Recogniser("fallback"))


def test_voice_engines_default_to_auto_which_follows_the_registered_metadata(workdir: Path) -> None:
    voice = load_settings().voice
    assert voice.asr.engine == voice.vad.engine == "auto"
    plugins = Plugins().load(only="none")
    plugins.register(SpeechEngines(), "speech")
    pick = plugins.pick
    # "broken" ranks first but cannot run here; "cloud" needs the internet; "mandarin" only speaks zh
    assert pick("asr", "auto", "zh").name == "cloud" and pick("asr", "auto", "zh", online=False).name == "mandarin"
    assert pick("asr", "auto", "en", online=False).name == "any" and pick("asr", "fallback").name == "fallback"
    assert [r.name for r in plugins.candidates("asr", "en", online=False)] == ["broken", "any", "fallback"]
    plugins.unregister("speech")
    with pytest.raises(EngineUnavailable, match="no asr engine can run here"):
        pick("asr")


def test_server_refuses_to_start_with_bad_settings(workdir: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "FAY_SERVER__MAX_SESSIONS": "0", "HOME": str(workdir)}
    run = subprocess.run(
        [sys.executable, "-m", "fay_core", "run", "--port", "0"], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 2
    assert "server.max_sessions (FAY_SERVER__MAX_SESSIONS): Input should be greater than 0" in run.stderr
