"""Eval suites: a YAML file naming a persona and its cases, validated into pydantic models.

::

    persona: bank_teller_en            # a persona id, or a persona file (``.yaml``, relative to this file)
    runs: 1                            # how many times each case runs (a case passes only if every run passes)
    cases:
      - id: friday-hours
        ask: what time do you close on friday
        source: hb-en-001              # an entry id, a file (faq.yaml, en/faq.yaml) or a chunk id, to be cited
        contains: "17:00"
      - id: weather
        ask: Will it rain tomorrow?
        declines: true
      - id: lost-card-then-replacement
        turns:                         # a scripted exchange; each turn has its own expectations
          - ask: I lost my card
            source: hb-en-004
          - ask: how long until the new one comes?
            contains: 5 working days
      - id: mortgage-shopper
        simulate:                      # a customer played by the configured LLM (skipped without one)
          goal: find out the mortgage rate and how much of the price you can borrow
          max_turns: 4
        judge: the teller gives the 3.85% rate and the 80% limit, and invents nothing else

Expectations (on a case with ``ask``, on each of ``turns``, or over the whole conversation of ``simulate``):
``source`` (each one named is cited), ``declines`` (``true``: the persona declines and offers a colleague;
``false``: it answers), ``contains`` / ``not_contains`` (text, case and spacing ignored), ``tool`` (each one named
is called, without an error), ``within_ms`` (the answer is complete within this budget, each turn) and ``judge``
(a criterion the configured LLM checks; skipped without one). Every block forbids unknown fields, so a typo is an
error naming the file, the line and the field, as persona files do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from ..errors import EvalSpecError
from ..persona import _key_line, _line_of  # the YAML line finders persona files use

#: the longest suite file accepted
MAX_CHARS = 1_000_000


def _texts(value: Any) -> Any:
    """One text or a list of them, as a list."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise ValueError("expected a text, or a list of texts")


#: a text, or a list of texts
Texts = Annotated[list[Annotated[str, Field(min_length=1)]], BeforeValidator(_texts)]


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Expectations(_Block):
    """What an answer (or a conversation) must show; every field left out is not checked."""

    source: Texts = Field(default_factory=list, description="entry ids, files or chunk ids that must all be cited")
    declines: bool | None = Field(None, description="true: declines and offers a colleague; false: answers")
    contains: Texts = Field(default_factory=list, description="texts the answer contains (case, spacing ignored)")
    not_contains: Texts = Field(default_factory=list, description="texts the answer must not contain")
    tool: Texts = Field(default_factory=list, description="tools that must be called and return without an error")
    within_ms: float | None = Field(None, gt=0, description="each answer is complete within this many ms")
    judge: str | None = Field(None, min_length=1, description="a criterion the configured LLM checks")

    def expects(self) -> bool:
        """Whether anything is checked at all."""
        return bool(self.source or self.declines is not None or self.contains or self.not_contains or self.tool
                    or self.within_ms is not None or self.judge)


class Step(Expectations):
    """One turn of a scripted exchange: what the customer says, and what the answer must show."""

    ask: str = Field(min_length=1)


class Simulation(_Block):
    """A customer played by the configured LLM, who talks to the persona until the goal is met (or given up)."""

    goal: str = Field(min_length=1, description="what the customer wants to get done, in their own words")
    opening: str | None = Field(None, min_length=1, description="the customer's first message (else the LLM's)")
    max_turns: int = Field(4, ge=1, le=20, description="messages the customer sends at most")


class Case(Expectations):
    """A question, a scripted exchange (``turns``) or a simulated customer (``simulate``), with expectations."""

    id: str = Field(min_length=1, max_length=120, pattern=r"^[^\s].*$")
    ask: str | None = Field(None, min_length=1, description="one question")
    turns: list[Step] | None = Field(None, min_length=1, description="a scripted exchange in one session")
    simulate: Simulation | None = None
    runs: int | None = Field(None, ge=1, le=100, description="times this case runs (default: the suite's runs)")
    customer: str | None = Field(None, min_length=1, description="the signed-in customer id (for account tools)")

    @model_validator(mode="after")
    def _one_kind(self) -> Case:
        kinds = [k for k in ("ask", "turns", "simulate") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("a case has exactly one of ask (a question), turns (a scripted exchange) or "
                             f"simulate (a simulated customer); this one has {', '.join(kinds) or 'none'}")
        if self.turns is not None and self.expects():
            raise ValueError("with turns, put the expectations on the turn they are about (each turn of turns: "
                             "ask, source, declines, contains, ...)")
        if self.turns is not None and not any(step.expects() for step in self.turns):
            raise ValueError("no turn of this case expects anything: add source, declines, contains, ... to one")
        if self.ask is not None and not self.expects():
            raise ValueError("this case expects nothing: add source, declines, contains, not_contains, tool, "
                             "within_ms or judge")
        return self

    @property
    def needs_llm(self) -> str:
        """Why this case needs an LLM (a simulated customer, a judge), or ``""``."""
        if self.simulate is not None:
            return "a simulated customer"
        if self.judge or any(step.judge for step in self.turns or []):
            return "a judge"
        return ""


class Suite(_Block):
    """A ``fay eval`` file's content."""

    persona: str = Field(min_length=1, description="a persona id, or a persona file relative to the suite")
    description: str = ""
    runs: int = Field(1, ge=1, le=100, description="times each case runs; it passes only if every run passes")
    cases: list[Case] = Field(min_length=1)

    _path: Path | None = PrivateAttr(None)

    @property
    def path(self) -> Path | None:
        """The suite file."""
        return self._path

    def persona_file(self) -> Path | None:
        """The persona file ``persona`` names (relative to the suite), or ``None`` when it is a persona id."""
        if not self.persona.endswith((".yaml", ".yml")) and "/" not in self.persona:
            return None
        p = Path(self.persona).expanduser()
        if not p.is_absolute() and self._path is not None:
            p = self._path.parent / p
        return p.resolve()


# --- loading ------------------------------------------------------------------------------------------


def parse_suite(text: str, path: Path | str) -> Suite:
    """Validate suite YAML ``text`` (read from ``path``); raise :class:`EvalSpecError` with file:line: field."""
    path = Path(path)

    def error(line: int | None, field: str, message: str) -> EvalSpecError:
        return EvalSpecError(f"{path}:{line or '?'}: {field}: {message}", [(str(path), line, field, message)])

    if len(text) > MAX_CHARS:
        raise error(None, "(file)", f"{len(text)} characters, over the {MAX_CHARS} a suite may have: split it")
    try:
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise error(mark.line + 1 if mark is not None else None, "(yaml)",
                    str(getattr(exc, "problem", None) or exc)) from None
    except (RecursionError, ValueError, TypeError) as exc:
        raise error(None, "(yaml)", f"a value cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise error(1, "(file)", "a suite is a YAML mapping with persona: and cases: (see `fay eval --help`)")
    try:
        suite = Suite.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            if err["type"] == "extra_forbidden":
                line = _key_line(root, loc)
                msg = f"unknown field (allowed: {', '.join(_allowed(loc))})"
            else:
                line = _line_of(root, loc)
                msg = err["msg"].removeprefix("Value error, ")
            problems.append((str(path), line, _dotted(loc, data), msg))
        raise EvalSpecError("\n".join(f"{f}:{ln or '?'}: {field}: {msg}" for f, ln, field, msg in problems),
                            problems) from None
    seen: set[str] = set()
    for i, case in enumerate(suite.cases):
        if case.id in seen:
            raise error(_line_of(root, ("cases", i, "id")), f"cases[{i}].id",
                        f"case id {case.id!r} is used twice: give each case its own id")
        seen.add(case.id)
    suite._path = path.resolve()
    return suite


def load_suite(path: Path | str) -> Suite:
    """Load one suite file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EvalSpecError(f"{path}: no such suite file") from None
    except IsADirectoryError:
        raise EvalSpecError(f"{path}: is a folder: name a suite file (e.g. personas/evals/*.eval.yaml)") from None
    except UnicodeDecodeError as exc:
        raise EvalSpecError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return parse_suite(text, path)


def _dotted(loc: tuple[Any, ...], data: Any) -> str:
    """``cases[2].turns[0].contains`` (with the case's id when it has one: ``cases[2](hours).contains``)."""
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("id"), str) and out.startswith("cases") \
                    and out.count("[") == 1:
                out += f"({node['id']})"
        else:
            out += ("." if out else "") + str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out or "(suite)"


#: the blocks a suite nests, by the field that holds them
_NESTED: dict[str, type[BaseModel]] = {"cases": Case, "turns": Step, "simulate": Simulation}


def _allowed(loc: tuple[Any, ...]) -> list[str]:
    """The fields allowed where the unknown field at ``loc`` was found."""
    model: type[BaseModel] = Suite
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        nested = _NESTED.get(str(part))
        if nested is None:
            return []
        model = nested
    return sorted(model.model_fields)
