"""Persona YAML never crashes the loader: generated and mutated documents load, or raise a PersonaError naming the file.

Documents start from ``personas/bank_teller_en.yaml`` and are mutated in their values and types, their keys, their
YAML syntax, their encoding, and their size and depth (see :mod:`bench.fuzz_persona` for thousands of cases).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.fuzz_persona import check, documents  # noqa: E402


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(documents())
def test_a_persona_document_loads_or_names_its_file(tmp_path_factory: pytest.TempPathFactory, doc: bytes) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    outcome = check(folder, doc)
    assert outcome in ("loaded", "rejected"), outcome
