"""Fetch the offline copy of Smart Turn v3 from the ``pipecat-ai`` wheel, without pipecat or its dependencies.

``python -m fay_smart_turn.fetch [--dest DIR]`` (what ``make smart-turn`` runs) downloads the pinned wheel with
``pip download --no-deps``, checks the model's SHA-256, and extracts only the ONNX file and pipecat's licence
(BSD-2-Clause, which must travel with the model) into ``<venv>/share/fay/smart_turn/`` (the folder the plugin
looks in), with a ``SOURCE.txt`` that says where they came from. Re-running with the model in place does nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from . import FILENAME, offline_dir

PIPECAT_VERSION = "1.14.0"
MODEL_SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"
MEMBER = f"pipecat/audio/turn/smart_turn/data/{FILENAME}"
LICENSE = f"pipecat_ai-{PIPECAT_VERSION}.dist-info/licenses/LICENSE"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch(dest: Path, *, wheel: Path | None = None) -> Path:
    """Put the model and its licence in ``dest``; return the model's path. ``wheel``: use this file, no download."""
    target = dest / FILENAME
    if target.is_file() and _sha256(target) == MODEL_SHA256 and (dest / "LICENSE").is_file():
        return target
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                 f"pipecat-ai=={PIPECAT_VERSION}", "-d", tmp],
                check=True,
            )
            wheel = next(Path(tmp).glob("pipecat_ai-*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            model = zf.read(MEMBER)
            licence = zf.read(LICENSE)
    if hashlib.sha256(model).hexdigest() != MODEL_SHA256:
        raise SystemExit(f"{MEMBER} in {wheel.name} is not the pinned model (SHA-256 differs): not installed")
    (dest / "LICENSE").write_bytes(licence)
    (dest / "SOURCE.txt").write_text(
        f"{FILENAME}: Smart Turn v3.2 (CPU, int8), from the pipecat-ai {PIPECAT_VERSION} wheel on PyPI,\n"
        f"member {MEMBER}, sha256 {MODEL_SHA256}.\n"
        "Upstream model: https://huggingface.co/pipecat-ai/smart-turn-v3 . Licence: BSD-2-Clause (LICENSE, from\n"
        f"{LICENSE}).\n",
        encoding="utf-8",
    )
    part = target.with_suffix(".part")
    part.write_bytes(model)
    part.replace(target)
    return target


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dest", type=Path, default=offline_dir(), help="folder (default: %(default)s)")
    ap.add_argument("--wheel", type=Path, help="a pipecat-ai wheel already downloaded (no network)")
    args = ap.parse_args(argv)
    path = fetch(args.dest, wheel=args.wheel)
    print(f"Smart Turn model: {path} (licence: {path.parent / 'LICENSE'})")


if __name__ == "__main__":
    main()
