"""Plugins: entry-point discovery, failure isolation, the load-only switch, documented hooks."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fay_core
from fay_core import hookspecs
from fay_core.errors import PluginError
from fay_core.plugins import Plugins


def _fay(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FAY_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "fay_core", *args], env=full_env, capture_output=True, text=True, timeout=60
    )


def test_example_plugin_package_is_discovered_through_its_entry_point() -> None:
    plugins = Plugins().load()
    info = next(i for i in plugins.infos if i.name == "weather")
    assert info.distribution == "fay-plugin-weather" and info.version == "0.1.0" and not info.error
    assert info.hooks == ["register_commands", "register_settings", "register_tools"]
    assert "weather" in plugins.tools and plugins.tools["weather"].invoke({"city": "London"}).startswith("London")


def test_builtins_register_through_the_same_group() -> None:
    plugins = Plugins().load()
    clock = next(i for i in plugins.infos if i.name == "clock")
    assert clock.distribution == "fay" and clock.module == "fay_clock"
    assert "current_time" in plugins.tools


def test_fay_plugins_lists_version_source_and_hooks() -> None:
    run = _fay("plugins")
    assert run.returncode == 0, run.stderr
    assert "weather 0.1.0 (fay-plugin-weather: fay_plugin_weather)" in run.stdout
    assert "hooks: register_commands, register_settings, register_tools" in run.stdout


def test_plugin_command_is_added_to_the_cli() -> None:
    run = _fay("weather", "Shanghai")
    assert run.returncode == 0 and "light rain" in run.stdout


def _broken_distribution(root: Path) -> None:
    """A distribution whose entry point imports a module that raises."""
    dist = root / "fay_broken-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fay-broken\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[fay]\nbroken = fay_broken\n")
    (root / "fay_broken.py").write_text("raise RuntimeError('this plugin is broken on purpose')\n")


def test_a_plugin_that_fails_to_import_is_named_and_the_others_load(tmp_path: Path) -> None:
    _broken_distribution(tmp_path)
    run = _fay("plugins", env={"PYTHONPATH": str(tmp_path)})
    assert run.returncode == 1
    assert "broken 1.0 (fay-broken: fay_broken)" in run.stdout
    assert "FAILED: RuntimeError: this plugin is broken on purpose" in run.stdout
    assert "weather 0.1.0" in run.stdout and "provides: tool:weather" in run.stdout
    # the rest of the CLI still works
    assert _fay("weather", "London", env={"PYTHONPATH": str(tmp_path)}).returncode == 0


def test_load_only_named_plugins(tmp_path: Path) -> None:
    _broken_distribution(tmp_path)
    run = _fay("plugins", env={"PYTHONPATH": str(tmp_path), "FAY_LOAD_PLUGINS": "weather"})
    assert run.returncode == 0, run.stdout
    assert "weather" in run.stdout and "broken" not in run.stdout and "clock" not in run.stdout


def test_an_engine_registered_twice_is_a_clear_error() -> None:
    class Twice:
        @fay_core.hookimpl
        def register_tts_engines(self, register):  # type: ignore[no-untyped-def]
            register("dup", lambda: None)

    plugins = Plugins().load(only="none")
    plugins.register(Twice(), "one")
    plugins.register(Twice(), "two")
    two = next(i for i in plugins.infos if i.name == "two")
    assert "registered twice" in two.error and plugins.engines["tts"]["dup"].plugin == "one"


def test_unknown_engine_and_tool_errors_say_what_exists() -> None:
    plugins = Plugins().load()
    with pytest.raises(PluginError, match="no asr engine named 'nope'"):
        plugins.engine("asr", "nope")
    with pytest.raises(PluginError, match=r"unknown tool\(s\) nope \(registered: .*current_time"):
        plugins.tools_for(["current_time", "nope"])


def test_tool_functions_need_a_docstring() -> None:
    def undocumented(x: int) -> int:
        return x

    class P:
        @fay_core.hookimpl
        def register_tools(self, register):  # type: ignore[no-untyped-def]
            register(undocumented)

    plugins = Plugins().load(only="none")
    plugins.register(P(), "p")
    assert "needs a docstring" in next(i for i in plugins.infos if i.name == "p").error


def test_every_hook_is_documented() -> None:
    specs = [f for name, f in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(f, "fay_spec")]
    assert len(specs) >= 12
    for spec in specs:
        doc = inspect.getdoc(spec) or ""
        params = [p for p in inspect.signature(spec).parameters]
        assert doc.splitlines()[0].endswith("."), spec.__name__
        for param in params:
            assert f":param {param}:" in doc, f"{spec.__name__} does not document {param}"


def test_public_names_are_exported_and_sorted() -> None:
    assert fay_core.__all__ == sorted(fay_core.__all__)
    for name in fay_core.__all__:
        assert getattr(fay_core, name) is not None
