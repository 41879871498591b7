"""The import graph of ``fay_core/`` and ``plugins/`` has no cycle, type-only and function-level imports included.

The graph is read from the source (``ast``), not from what happens to be imported at run time, so an import
under ``if TYPE_CHECKING:`` or inside a function counts like any other. A module importing ``pkg.mod`` depends on
``pkg.mod``; ``from pkg import name`` depends on ``pkg.name`` if that is a module, else on ``pkg``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def modules() -> dict[str, Path]:
    """Every module of Fay's packages: ``fay_core.*`` and the built-in plugins (``plugins/fay_*`` → ``fay_*``)."""
    out: dict[str, Path] = {}
    for base, top in ((ROOT, ROOT / "fay_core"), *((ROOT / "plugins", p) for p in (ROOT / "plugins").glob("fay_*"))):
        for path in top.rglob("*.py"):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` that module ``name`` imports anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            targets = [f"{target}.{a.name}" if f"{target}.{a.name}" in known else target for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # ``import a.b.c`` of a non-module name: its nearest module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of ``graph`` (one per strongly connected component of more than one module)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_every_kind_of_import() -> None:
    known = set(modules())
    assert {"fay_core.app", "fay_core.assembly", "fay_whisper", "fay_e5.fast"} <= known
    # a relative import, a type-only import and an import inside a function are all edges
    assert "fay_core.bus" in imports("fay_core.session", modules()["fay_core.session"], known)
    assert "fay_core.voice.pipeline" in imports("fay_core.session", modules()["fay_core.session"], known)
    assert "fay_core.avatar.portrait" in imports("fay_avatar_video2d", modules()["fay_avatar_video2d"], known)
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    mods = modules()
    known = set(mods)
    graph = {name: imports(name, path, known) for name, path in mods.items()}
    found = cycles(graph)
    if found:
        pytest.fail("import cycles (type-only and function-level imports count):\n"
                    + "\n".join(" <-> ".join(c) for c in found))
