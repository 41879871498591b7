"""Personas: shipped files are valid; broken files name file, line and field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fay_core.errors import PersonaError
from fay_core.persona import PersonaStore, load_persona, parse_persona

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / "personas").glob("*.yaml"))

GOOD = """\
name: Test teller
language: en
voice:
  engine: piper
interruption:
  min_speech_ms: 300
"""


def test_there_are_chinese_and_english_bank_tellers() -> None:
    languages = {load_persona(p).language for p in SHIPPED if "bank" in p.stem}
    assert {"zh", "en"} <= languages


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_personas_are_valid(path: Path) -> None:
    persona = load_persona(path)
    assert persona.id == path.stem and persona.name and len(persona.version) == 12


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        (GOOD.replace("min_speech_ms: 300", "min_speech_ms: soon"), 6, "interruption.min_speech_ms", "integer"),
        (GOOD.replace("  engine: piper", "  engine: piper\n  pitch: 3"), 5, "voice.pitch", "unknown field"),
        (GOOD + "tools: calculator\n", 7, "tools", "valid list"),
        (GOOD.replace("language: en", "language: fr"), 2, "language", "'zh', 'en' or 'auto'"),
        (GOOD.replace("name: Test teller\n", ""), 1, "name", "Field required"),
        (GOOD.replace("voice:\n  engine: piper", "voice: engine: piper"), 3, "(yaml)", "mapping values"),
    ],
    ids=["wrong-type", "unknown-field", "list-expected", "bad-literal", "missing", "bad-yaml"],
)
def test_broken_persona_names_file_line_and_field(text: str, line: int, field: str, message: str) -> None:
    with pytest.raises(PersonaError) as info:
        parse_persona(text, "personas/broken.yaml")
    first = str(info.value).splitlines()[0]
    assert first.startswith(f"personas/broken.yaml:{line}: {field}:"), first
    assert message in first


def test_unknown_field_lists_the_allowed_ones() -> None:
    with pytest.raises(PersonaError, match=r"allowed: .*min_speech_ms"):
        parse_persona(GOOD.replace("min_speech_ms", "min_speach_ms"), "p.yaml")


def test_every_problem_is_reported_at_once() -> None:
    text = GOOD.replace("language: en", "language: fr").replace("min_speech_ms: 300", "min_speech_ms: -1")
    with pytest.raises(PersonaError) as info:
        parse_persona(text, "p.yaml")
    assert [p[2] for p in info.value.problems] == ["language", "interruption.min_speech_ms"]


def test_store_finds_personas_and_refuses_unknown_or_unsafe_ids(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    store = PersonaStore(tmp_path)
    assert store.ids() == ["a"] and store.get("a").name == "Test teller"
    with pytest.raises(PersonaError, match="unknown persona 'b'.*known: a"):
        store.get("b")
    with pytest.raises(PersonaError, match="invalid persona id"):
        store.get("../etc/passwd")


def test_store_rereads_a_changed_file(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(GOOD)
    store = PersonaStore(tmp_path)
    assert store.get("a").name == "Test teller"
    path.write_text(GOOD.replace("Test teller", "Renamed"))
    import os

    os.utime(path, (path.stat().st_atime, path.stat().st_mtime + 5))
    assert store.get("a").name == "Renamed"


def test_cli_validate_prints_file_line_field_and_fails(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("min_speech_ms: 300", "min_speech_ms: soon"))
    run = subprocess.run(
        [sys.executable, "-m", "fay_core", "persona", "validate", str(bad), *map(str, SHIPPED)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    assert f"{bad}:6: interruption.min_speech_ms:" in run.stderr
    assert run.stdout.count("ok ") == len(SHIPPED)


def test_cli_validate_passes_on_shipped_personas() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "fay_core", "persona", "validate", str(ROOT / "personas")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
