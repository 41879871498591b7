"""Fuzz the persona loader: thousands of mutated persona documents must load or raise a PersonaError naming the file.

Documents start from ``personas/bank_teller_en.yaml``; each is mutated in its values and types, keys, YAML syntax,
encoding, or size and depth, and goes through the real loader (``load_persona`` and ``PersonaStore.get``). Prints
the counts and writes ``bench/results/fuzz_persona.json``::

    python bench/fuzz_persona.py --cases 5000
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fay_core.errors import PersonaError  # noqa: E402
from fay_core.persona import PersonaStore, load_persona  # noqa: E402

BASE_TEXT = (ROOT / "personas" / "bank_teller_en.yaml").read_text(encoding="utf-8")
BASE: dict[str, Any] = yaml.safe_load(BASE_TEXT)
NAME = "fuzzed"

_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
                     st.sampled_from(["", "auto", "en", "zh", "-1", "1e309", "nan", "~", "yes", "0x1F"]))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
_snippets = st.sampled_from([
    "&a", "*a", "*nope", "!!python/object:os.system", "!!binary", "!!int", "{", "}", "[", "]", "- ", ": ", ":\t",
    "\t", "%YAML 1.1\n", "---\n", "...\n", "? ", "|", ">", "'", '"', "#", "\x00", "\ufeff", "\r", "\u2028", "\\",
    "key: value\n", "name:\n", "knowledge: [\n", "<<: *a\n", "@", "`",
])


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(data, dict):
        for k, v in data.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _paths(v, (*prefix, i))
    return out


PATHS = _paths(BASE)[1:]


def _set(data: Any, path: tuple[Any, ...], value: Any, how: str) -> Any:
    data = json.loads(json.dumps(data))
    node = data
    for part in path[:-1]:
        node = node[part]
    key = path[-1]
    if how == "delete":
        del node[key]
    elif how == "rename" and isinstance(node, dict):
        node[f"{key}_x" if not isinstance(value, str) or not value else value] = node.pop(key)
    else:
        node[key] = value
    return data


@st.composite
def _structural(draw: st.DrawFn) -> bytes:
    data: Any = BASE
    for _ in range(draw(st.integers(1, 3))):
        if not isinstance(data, dict):
            break
        paths = _paths(data)[1:]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        data = _set(data, path, draw(_values), draw(st.sampled_from(["set", "set", "delete", "rename"])))
    if draw(st.booleans()):
        data = draw(st.sampled_from([data, [data], "just text", 42, None, {"unknown": data}]))
    return yaml.safe_dump(data, allow_unicode=draw(st.booleans()), sort_keys=False).encode()


@st.composite
def _textual(draw: st.DrawFn) -> bytes:
    text = BASE_TEXT
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = draw(_snippets | st.text(max_size=6))
        if op == "insert":
            text = text[:at] + piece + text[at:]
        elif op == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 40)):]
        else:
            text = text[:at] + piece + text[at + len(piece):]
    return text.encode("utf-8", "surrogatepass")


@st.composite
def _encoded(draw: st.DrawFn) -> bytes:
    text = BASE_TEXT.replace("Ava", draw(st.sampled_from(["Ava", "Ávå", "阿娃", "😀"])))
    how = draw(st.sampled_from(["utf-16", "utf-16-le", "utf-32", "latin-1", "cp1252", "utf-8-sig", "gb18030",
                                "cut", "bytes"]))
    if how == "cut":
        raw = text.encode()
        return raw[: draw(st.integers(0, len(raw)))]
    if how == "bytes":
        return draw(st.binary(max_size=200))
    return text.encode(how, "replace")


@st.composite
def _huge(draw: st.DrawFn) -> bytes:
    n = draw(st.sampled_from([100, 1000, 5000, 20000]))
    how = draw(st.sampled_from(["flow", "block", "dict", "laughs", "long", "many"]))
    if how == "flow":
        body = f"name: x\nknowledge: {{faq: {'[' * n}{']' * n}}}\n"
    elif how == "block":
        body = "name: x\navatar:\n  options:\n" + "".join("  " * (i + 2) + f"k{i}:\n" for i in range(min(n, 2000)))
    elif how == "dict":
        body = "name: x\navatar: {options: " + "{a: " * n + "1" + "}" * n + "}\n"
    elif how == "laughs":
        lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
        lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
        body = "name: x\navatar:\n  options:\n" + "".join(f"    {line}\n" for line in lines) + "description: *a8\n"
    elif how == "long":
        body = f"name: {'x' * n * 50}\ngreeting: {'y' * n * 50}\n"
    else:
        body = "name: x\ntools:\n" + "".join(f"  - tool{i}\n" for i in range(n)) + f"x{n}: 1\n"
    return body.encode()


def documents() -> st.SearchStrategy[bytes]:
    """Persona documents as bytes: mutated in structure, text, encoding, or size and depth."""
    return st.one_of(_structural(), _textual(), _encoded(), _huge())


def check(folder: Path, doc: bytes) -> str:
    """Load ``doc`` as ``<folder>/fuzzed.yaml`` through both loaders: ``loaded``, ``rejected`` (a PersonaError that
    names the file), or what went wrong."""
    path = folder / f"{NAME}.yaml"
    path.write_bytes(doc)
    outcomes = []
    for load in (lambda: load_persona(path), lambda: PersonaStore(folder).get(NAME)):
        try:
            load()
            outcomes.append("loaded")
        except PersonaError as exc:
            if path.name not in str(exc) or (exc.problems and path.name not in exc.public):
                return f"unnamed: {exc}"[:300]
            if any(not field for _f, _ln, field, _m in exc.problems):
                return f"no field: {exc.problems}"[:300]
            outcomes.append("rejected")
        except Exception as exc:  # the bug this looks for
            return f"crash: {type(exc).__name__}: {exc}"[:300]
    if outcomes[0] != outcomes[1]:
        return f"loaders disagree: {outcomes}"
    return outcomes[0]


class _Hang(Exception):
    pass


def _alarm(_sig: int, _frame: Any) -> None:
    raise _Hang


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fuzz_persona.json")
    args = parser.parse_args()
    counts: Counter[str] = Counter()
    failures: list[dict[str, Any]] = []
    slowest = 0.0
    signal.signal(signal.SIGALRM, _alarm)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)

        @seed(args.seed)
        @settings(max_examples=args.cases, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(documents())
        def case(doc: bytes) -> None:
            nonlocal slowest
            t = time.monotonic()
            signal.alarm(10)
            try:
                outcome = check(folder, doc)
            except _Hang:
                outcome = "hang: over 10 s"
            finally:
                signal.alarm(0)
            slowest = max(slowest, time.monotonic() - t)
            kind = outcome.split(":", 1)[0]
            counts[kind] += 1
            if kind not in ("loaded", "rejected"):
                failures.append({"case": sum(counts.values()), "outcome": outcome,
                                 "document": doc[:500].decode("utf-8", "replace")})

        case()
    total = sum(counts.values())
    result = {"cases": total, "seed": args.seed, "counts": dict(counts), "failures": failures[:50],
              "seconds": round(time.monotonic() - started, 1), "slowest_case_s": round(slowest, 3)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{total} cases in {result['seconds']} s (slowest {result['slowest_case_s']} s): "
          + ", ".join(f"{k} {v}" for k, v in counts.most_common()))
    for f in failures[:10]:
        print(f"  case {f['case']}: {f['outcome']}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
