"""`fay eval`: the shipped suites pass through the product's own path; wrong expectations fail with a clear table
and exit 1; --json has exactly its fields; a broken suite names file, line and field; judge, simulated customer,
tool, within_ms and runs against FakeLLM over real HTTP."""

from __future__ import annotations

import json
import os
from pathlib import Path
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import pytest_asyncio
from click.testing import CliRunner

from fay_core.app import Fay
from fay_core.cli import cli
from fay_core.errors import EvalSpecError
from fay_core.evaluation.judge import parse_verdict
from fay_core.evaluation.runner import Evaluator, SuiteResult
from fay_core.evaluation.spec import load_suite, parse_suite
from fay_core.persona import load_persona
from fay_core.settings import LLMSettings
from fay_core.testing import FakeLLM, Reply, test_settings

ROOT = Path(__file__).resolve().parent.parent
SUITES = sorted((ROOT / "personas" / "evals").glob("*.eval.yaml"))
JUDGE = "You check the answers"  # how the judge's system prompt starts
CUSTOMER = "You play a customer"  # ... and the simulated customer's


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def app(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Fay]:
    """One runtime for the module's tests (its knowledge is ingested once, by the first case that needs it); a test
    that needs an LLM points it at its own FakeLLM with :func:`llm`."""
    settings = test_settings(tmp_path_factory.mktemp("eval") / "data", personas_dir=ROOT / "personas")
    async with Fay(settings) as fay:
        yield fay


@contextmanager
def llm(app: Fay, fake: FakeLLM) -> Iterator[None]:
    """Sessions (and judges) built meanwhile answer with ``fake``; offline again afterwards."""
    app.settings.llm = LLMSettings(model=fake.model, api_base=fake.url, retries=0)
    try:
        yield
    finally:
        app.settings.llm = LLMSettings()


#: the module's async tests share the runtime's event loop
shared = pytest.mark.asyncio(loop_scope="module")


def write(tmp_path: Path, text: str, name: str = "suite.eval.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


async def evaluate(app: Fay, suite: Path) -> SuiteResult:
    return await Evaluator(app, load_suite(suite)).run()


def by_id(result: SuiteResult) -> dict[str, Any]:
    return {c.case.id: c for c in result.cases}


# --- the shipped suites -------------------------------------------------------------------------------------


def test_every_shipped_persona_has_a_suite() -> None:
    personas = {p.stem for p in (ROOT / "personas").glob("*.yaml")}
    suites = {p.name.removesuffix(".eval.yaml") for p in SUITES}
    assert suites == personas


@shared
@pytest.mark.parametrize("suite", SUITES, ids=lambda p: p.name)
async def test_the_shipped_suites_pass_offline(app: Fay, suite: Path) -> None:
    result = await evaluate(app, suite)
    failed = {c.case.id: c.failures for c in result.cases if c.passed is False}
    assert not failed, failed
    cases = by_id(result)
    ran = [c for c in cases.values() if not c.skipped]
    persona = load_persona(ROOT / "personas" / f"{load_suite(suite).persona}.yaml")
    if persona.scenario.steps:  # a role-play: the avatar plays its part (scripted lines offline), no sources
        assert ran and all(c.case.contains or any(t.contains for t in c.case.turns or []) for c in ran)
        assert all(not t.declined for c in ran for t in c.shown.turns)
    else:
        check_knowledge_suite(result, cases, ran)
    # only what needs an LLM is skipped, and it says so
    assert {c.case.id for c in cases.values() if c.skipped} == {c.case.id for c in cases.values() if c.case.needs_llm}
    assert all("needs an LLM" in c.skipped for c in cases.values() if c.skipped)


def check_knowledge_suite(result: SuiteResult, cases: dict[str, Any], ran: list[Any]) -> None:
    """A knowledge persona's suite has real declines and real sourced answers."""
    declines = [c for c in ran if c.case.declines]
    answers = [c for c in ran if c.case.source or any(s.source for s in c.case.turns or [])]
    assert declines and answers and result.passed == len(declines) + len(answers)
    assert all(c.shown.turns[-1].declined for c in declines)  # really declined, by the persona's hand-off
    assert all(not t.declined and t.sources for c in answers for t in c.shown.turns)


# --- the command ---------------------------------------------------------------------------------------------

#: a persona whose knowledge (an inline FAQ) ingests in a moment
DESK = """\
name: Interview desk
language: en
greeting: Hello.
knowledge:
  faq:
    - question: How long does the interview take?
      answer: About twenty minutes, with five main questions and time for your questions at the end.
"""

#: one right case, two wrong ones, on that persona
WRONG = """\
persona: desk.yaml
cases:
  - id: right-source
    ask: how long is this interview going to take
    source: desk.yaml
  - id: wrong-source
    ask: how long is this interview going to take
    source: nowhere.yaml
    contains: two hours
  - id: wrong-decline
    ask: How long will this take?
    declines: true
"""


def _eval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    """``fay eval ARGS`` as a user runs it, with settings from the environment only (a fresh data folder)."""
    for key in [k for k in os.environ if k.startswith("FAY_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("FAY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FAY_PERSONAS_DIR", str(ROOT / "personas"))
    monkeypatch.chdir(tmp_path)  # no fay.yaml or .env of the developer's
    return CliRunner().invoke(cli, ["eval", *args])


def test_a_wrong_expectation_fails_with_a_clear_table_and_exit_1(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, DESK, "desk.yaml")
    run = _eval(tmp_path, monkeypatch, str(write(tmp_path, WRONG)))
    assert run.exit_code == 1, run.output
    rows = {line.split("│")[1].strip(): line for line in run.stdout.splitlines() if line.count("│") > 3}
    assert "PASS" in rows["right-source"] and "desk.yaml#1" in rows["right-source"]
    assert "FAIL" in rows["wrong-source"]
    assert "expected source nowhere.yaml, cited desk.yaml#1" in rows["wrong-source"]
    assert "answer lacks 'two hours'" in run.stdout
    assert "FAIL" in rows["wrong-decline"] and "expected a decline, answered" in rows["wrong-decline"]
    assert "1 passed, 2 failed" in run.stdout
    assert "persona desk, offline answerer" in run.stdout


def test_json_has_exactly_the_fields(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, DESK, "desk.yaml")
    result = _eval(tmp_path, monkeypatch, str(write(tmp_path, WRONG)), "--json")
    assert result.exit_code == 1, result.output
    out = json.loads(result.stdout)  # nothing but the JSON on stdout
    assert set(out) == {"cases", "passed", "failed"} and (out["passed"], out["failed"]) == (1, 2)
    for case in out["cases"]:
        assert set(case) == {"id", "passed", "answer", "sources", "declined", "latency_ms", "failures"}
    right, wrong, decline = out["cases"]
    assert right["passed"] is True and right["failures"] == [] and right["sources"] == ["desk.yaml#1"]
    assert "twenty minutes" in right["answer"] and right["declined"] is False and right["latency_ms"] > 0
    assert wrong["passed"] is False and len(wrong["failures"]) == 2 and wrong["id"] == "wrong-source"
    assert decline["passed"] is False and decline["sources"] == ["desk.yaml#1"]


def test_a_malformed_suite_names_file_line_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, """\
persona: bank_teller_en
cases:
  - id: hours
    ask: when do you open
    sorce: hb-en-001
  - id: slow
    ask: hi
    within_ms: fast
  - id: both
    ask: hi
    turns: [{ask: hello, declines: true}]
""", "broken.eval.yaml")
    with pytest.raises(EvalSpecError) as err:
        load_suite(path)
    lines = str(err.value).splitlines()
    assert lines[0] == f"{path}:5: cases[0](hours).sorce: unknown field (allowed: ask, contains, customer, " \
                       "declines, id, judge, not_contains, runs, simulate, source, tool, turns, within_ms)"
    assert lines[1].startswith(f"{path}:8: cases[1](slow).within_ms: Input should be a valid number")
    assert lines[2].startswith(f"{path}:9: cases[2](both): a case has exactly one of ask")
    assert [p[1] for p in err.value.problems] == [5, 8, 9]
    # the command says the same and exits 2, before starting anything
    result = CliRunner().invoke(cli, ["eval", str(path)])
    assert result.exit_code == 2 and f"{path}:5: cases[0](hours).sorce: unknown field" in result.output


@pytest.mark.parametrize("text, where", [
    ("persona: x\ncases: [\n", ":3: (yaml):"),
    ("- just a list\n", ":1: (file): a suite is a YAML mapping"),
    ("persona: x\ncases: []\n", ":2: cases: List should have at least 1 item"),
    ("persona: x\ncases:\n  - {id: a, ask: hi, source: x}\n  - {id: a, ask: ho, declines: true}\n",
     ":4: cases[1].id: case id 'a' is used twice"),
    ("persona: x\ncases:\n  - id: a\n    ask: hi\n", ":3: cases[0](a): this case expects nothing"),
    ("persona: x\ncases:\n  - id: a\n    simulate: {goal: g, max_turn: 3}\n",
     ":4: cases[0](a).simulate.max_turn: unknown field (allowed: goal, max_turns, opening)"),
])
def test_suite_errors_point_at_the_line(text: str, where: str) -> None:
    with pytest.raises(EvalSpecError) as err:
        parse_suite(text, "s.eval.yaml")
    assert str(err.value).startswith("s.eval.yaml" + where), str(err.value)


# --- expectations that need an LLM (FakeLLM, real HTTP through litellm) --------------------------------------


def _last_user(body: dict[str, Any]) -> str:
    return str(next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user"))


@shared
async def test_judge_verdicts_pass_fail_and_unreadable(app: Fay, tmp_path: Path) -> None:
    verdicts = {"tells the phone number": '{"pass": true, "reason": "gives 400-800-1234"}',
                "mentions a branch visit": '```json\n{"pass": false, "reason": "no branch is mentioned"}\n```',
                "is polite": "Yes, it is polite."}

    def respond(body: dict[str, Any]) -> str:
        if body["messages"][0]["content"].startswith(JUDGE):
            return next(v for k, v in verdicts.items() if f"Criterion: {k}" in _last_user(body))
        return "Freeze the card in the app or call 400-800-1234 [1]."

    path = write(tmp_path, "persona: bank_teller_en\ncases:\n" + "".join(
        f"  - id: c{i}\n    ask: I lost my card\n    judge: {k}\n" for i, k in enumerate(verdicts)))
    async with FakeLLM(responder=respond) as fake:
        with llm(app, fake):
            c0, c1, c2 = (await evaluate(app, path)).cases
    assert c0.passed is True and c0.shown.turns[0].sources == ["en/faq.yaml#hb-en-004"]
    assert c0.shown.turns[0].answered_by == "llm"
    assert c1.failures == ["judge: not met (mentions a branch visit): no branch is mentioned"]
    assert c2.passed is False and c2.failures[0].startswith("judge: the LLM's verdict is not JSON")
    assert "'Yes, it is polite.'" in c2.failures[0]
    judged = [b for b in fake.requests if b["messages"][0]["content"].startswith(JUDGE)]
    assert len(judged) == 3 and all(b["temperature"] == 0 for b in judged)
    assert "Agent: Freeze the card in the app or call 400-800-1234 [1]." in _last_user(judged[0])
    assert "en/faq.yaml#hb-en-004" in _last_user(judged[0])  # the judge sees the cited sources


@shared
async def test_a_simulated_customer_talks_until_done(app: Fay, tmp_path: Path) -> None:
    said = iter(["Hi, I lost my debit card, what should I do?", "And when does the new one come?", "DONE"])

    def respond(body: dict[str, Any]) -> str:
        system = body["messages"][0]["content"]
        if system.startswith(CUSTOMER):
            return next(said) if "Your goal: you lost your card" in system else "the goal is missing"
        if system.startswith(JUDGE):
            return '{"pass": true, "reason": "ok"}'
        return "Freeze the card in the app; a replacement comes within 5 working days [1]."

    path = write(tmp_path, """\
persona: bank_teller_en
cases:
  - id: lost-card
    simulate: {goal: you lost your card, max_turns: 5}
    source: hb-en-004
    contains: 5 working days
    judge: the agent explains what to do
""")
    async with FakeLLM(responder=respond) as fake:
        with llm(app, fake):
            (case,) = (await evaluate(app, path)).cases
    assert case.passed is True, case.failures
    assert [t.question for t in case.shown.turns] == ["Hi, I lost my debit card, what should I do?",
                                                      "And when does the new one come?"]
    # the customer saw the persona's answers as the other side of the conversation
    last_customer = [b for b in fake.requests if b["messages"][0]["content"].startswith(CUSTOMER)][-1]
    assert last_customer["messages"][-1] == {"role": "user", "content": case.shown.turns[-1].answer}


@shared
async def test_cases_that_need_an_llm_are_skipped_without_one(app: Fay, tmp_path: Path) -> None:
    path = write(tmp_path, """\
persona: bank_teller_en
cases:
  - {id: judged, ask: I lost my card, judge: is helpful}
  - {id: simulated, simulate: {goal: get help}}
  - {id: plain, ask: I lost my card, source: hb-en-004}
""")
    result = await evaluate(app, path)
    judged, simulated, plain = result.cases
    assert judged.skipped.startswith("a judge needs an LLM") and simulated.skipped.startswith("a simulated customer")
    assert judged.as_json()["passed"] is None and judged.as_json()["failures"][0].startswith("skipped: a judge")
    assert plain.passed is True and (result.passed, result.failed, result.skipped) == (1, 0, 2)


CLOCK_PERSONA = """\
name: Clock
language: en
system_prompt: You tell the time.
tools: [current_time]
"""


@shared
async def test_tool_expectations(app: Fay, tmp_path: Path) -> None:
    write(tmp_path, CLOCK_PERSONA, "clock.yaml")  # a persona file beside the suite, outside the personas folder
    path = write(tmp_path, """\
persona: clock.yaml
cases:
  - {id: calls-the-clock, ask: "What time is it in London?", tool: current_time, contains: London}
  - {id: expects-another-tool, ask: "What time is it in London?", tool: branch_hours}
""")
    async with FakeLLM() as fake:
        for _ in range(2):
            fake.enqueue(Reply(tool_calls=[{"name": "current_time", "arguments": {"timezone": "Europe/London"}}]),
                         Reply("It is noon in London."))
        with llm(app, fake):
            called, other = (await evaluate(app, path)).cases
    assert called.passed is True, called.failures
    assert called.shown.turns[0].tools == [("current_time", "")]
    tool_result = fake.requests[1]["messages"][-1]  # the clock really ran
    assert tool_result["role"] == "tool" and ("BST" in tool_result["content"] or "GMT" in tool_result["content"])
    assert other.failures == ["tool branch_hours was not called (called: current_time)"]


@shared
async def test_a_tool_expectation_offline_says_why_it_fails(app: Fay, tmp_path: Path) -> None:
    path = write(tmp_path, "persona: bank_teller_en\ncases:\n  - {id: t, ask: I lost my card, tool: branch_hours}\n")
    (case,) = (await evaluate(app, path)).cases
    assert case.failures == ["tool branch_hours was not called (called: none) (the offline answerer calls no tools: "
                             "configure an LLM)"]


@shared
async def test_within_ms_and_runs(app: Fay, tmp_path: Path) -> None:
    # roomy, tight, then the three runs of thrice: the second of them goes wrong
    answers = iter(["Call 400-800-1234 [1].", "Call 400-800-1234 [1].", "Call 400-800-1234 [1].",
                    "I have no idea.", "Call 400-800-1234 [1]."])
    path = write(tmp_path, """\
persona: bank_teller_en
cases:
  - {id: roomy, ask: I lost my card, within_ms: 60000, contains: 400-800-1234}
  - {id: tight, ask: I lost my card, within_ms: 200}
  - {id: thrice, ask: I lost my card, contains: 400-800-1234, runs: 3}
""")
    async with FakeLLM(first_token_delay=0.4, responder=lambda body: next(answers)) as fake:
        with llm(app, fake):
            roomy, tight, thrice = (await evaluate(app, path)).cases
    assert roomy.passed is True and roomy.as_json()["latency_ms"] >= 400  # the model's delay, seen by the caller
    (failure,) = tight.failures
    assert failure.startswith("took ") and failure.endswith(" ms, over within_ms 200")
    assert thrice.passed is False and [r.passed for r in thrice.runs] == [True, False, True]
    assert thrice.failures == ["run 2/3: answer lacks '400-800-1234': 'I have no idea.'"]
    assert thrice.as_json()["answer"] == "I have no idea."  # the JSON shows the run that failed


def test_judge_verdicts_are_read_strictly() -> None:
    assert parse_verdict('{"pass": true, "reason": "fine"}') == (True, "fine")
    assert parse_verdict('```\n{"pass": false}\n```') == (False, "")
    assert parse_verdict('{"pass": "yes"}')[0] is None
    assert parse_verdict('Verdict: {"pass": true}')[0] is None  # prose around the object is not a verdict
    assert parse_verdict("[]")[0] is None
