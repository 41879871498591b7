"""Role-play scenarios: the YAML plan, the runner (offline scripted lines; an LLM over the real voice path), and
the stored report (HTTP, restart, overrides, bad input).

Real parts: the shipped sales and interviewer personas, the e5 embedder scoring the reports, litellm over HTTP to
the test's FakeLLM, piper speaking the trainee's lines into Silero VAD and faster-whisper.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from click.testing import CliRunner

from fay_core.app import Fay
from fay_core.cli import cli
from fay_core.errors import PersonaError
from fay_core.events import (
    AgentTurnFinished,
    AvatarStoppedSpeaking,
    ErrorRaised,
    ScenarioEnded,
    ScenarioStepChanged,
    TranscriptFinal,
)
from fay_core.persona import parse_persona
from fay_core.server import create_app
from fay_core.settings import LLMSettings, Settings
from fay_core.testing import FakeLLM, Recorder, Reply

ROOT = Path(__file__).resolve().parent.parent
SALES = (ROOT / "personas" / "sales_en.yaml").read_text(encoding="utf-8")
#: sales_en without its knowledge base (the scripted customer needs none; the tests that copy it run faster)
SALES_ALONE = SALES.replace("knowledge:\n  collections: [harbor-bank-en]\n  paths: [../knowledge/demo_bank/en]\n"
                            "  top_k: 3\n", "")

#: the trainee's side of a good sales conversation (sales_en), one line per turn
GOOD_ADVISER = [
    "Good morning, welcome to Harbor Bank. How can I help you today?",
    "Happy to explain. May I ask how often you travel abroad, and what you usually spend on?",
    "I understand. The annual fee is waived in the next card year once you spend 120,000.",
    "There is no foreign transaction fee on the Platinum card, and it includes travel insurance for trips up to 30 "
    "days.",
    "You can apply in the app or at a branch, and there is no pressure to decide today.",
]


@pytest.fixture
def alone(tmp_path: Path, settings: Settings) -> Settings:
    """Settings whose personas are the shipped interviewer_zh and sales_en without its knowledge base."""
    folder = tmp_path / "personas"
    folder.mkdir()
    (folder / "sales_en.yaml").write_text(SALES_ALONE, encoding="utf-8")
    (folder / "interviewer_zh.yaml").write_text((ROOT / "personas" / "interviewer_zh.yaml").read_text("utf-8"), "utf-8")
    settings.personas_dir = folder
    return settings


def report_path(settings: Settings, sid: str, tenant: str = "default") -> Path:
    return settings.data_dir / "reports" / tenant / f"{sid}.json"


def read_report(path: Path) -> dict[str, Any] | None:
    return dict(json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else None


async def wait_for_file(path: Path, within: float = 60.0) -> dict[str, Any]:
    for _ in range(int(within * 10)):
        report = await asyncio.to_thread(read_report, path)
        if report is not None:
            return report
        await asyncio.sleep(0.1)
    raise AssertionError(f"no report at {path} after {within} s")


# --- the plan in YAML -----------------------------------------------------------------------------------------


def test_shipped_role_plays_have_scripted_steps_and_rubrics() -> None:
    for name in ("sales_en", "sales_zh", "interviewer_zh"):
        persona = parse_persona((ROOT / "personas" / f"{name}.yaml").read_text(encoding="utf-8"), f"{name}.yaml")
        sc = persona.scenario
        assert sc.steps and all(step.say for step in sc.steps), name
        assert sc.rubric and all(item.checks for item in sc.rubric), name
    assert parse_persona(SALES, "sales_en.yaml").scenario.avatar_role == "customer"
    assert SALES_ALONE != SALES and "knowledge" not in parse_persona(SALES_ALONE, "s.yaml").model_fields_set


@pytest.mark.parametrize(
    ("edit", "line", "field", "words"),
    [
        (("goto: classic", "goto: nowhere"), 49, "scenario.steps.1.next.0.goto", "no step 'nowhere'"),
        (("    - id: foreign", "    - id: needs"), 51, "scenario.steps.2.id", "used twice"),
        (("        - otherwise: close", "        - otherwise: close\n          if_aim: met"), 59,
         "scenario.steps.2.next.0", "'otherwise' takes no condition"),
        (("  difficulty: medium", "  difficulty: brutal"), 27, "scenario.difficulty", "'easy', 'medium' or 'hard'"),
        (("      turns: 2", "      turnz: 2"), 38, "scenario.steps.0.turnz", "allowed: aim, id, listen_for"),
    ],
    ids=["unknown-goto", "duplicate-id", "otherwise-with-condition", "bad-difficulty", "unknown-step-field"],
)
def test_a_broken_plan_names_file_line_and_field(edit: tuple[str, str], line: int, field: str, words: str) -> None:
    old, new = edit
    assert old in SALES
    with pytest.raises(PersonaError) as info:
        parse_persona(SALES.replace(old, new, 1), "personas/sales_en.yaml")
    first = str(info.value).splitlines()[0]
    assert first.startswith(f"personas/sales_en.yaml:{line}: {field}:") and words in first, first


def test_plain_string_steps_stay_valid() -> None:
    persona = parse_persona("name: I\nscenario:\n  kind: interview\n  steps: [Introduction, Questions]\n", "i.yaml")
    assert [(s.id, s.aim, s.say) for s in persona.scenario.steps] == [("step1", "Introduction", []),
                                                                      ("step2", "Questions", [])]


# --- offline: the scripted lines --------------------------------------------------------------------------------


async def play(fay: Fay, persona: str, lines: list[str], **create: Any) -> tuple[Any, list[AgentTurnFinished],
                                                                                   Recorder]:
    session = await fay.create_session(persona, **create)
    rec = Recorder(session.bus, ScenarioStepChanged, ScenarioEnded)
    answers = [await session.answer(line) for line in lines]
    return session, answers, rec


async def test_offline_sales_scenario_plays_its_lines_branches_ends_and_stores_a_report(alone: Settings) -> None:
    settings = alone
    async with Fay(settings) as fay:
        session, answers, rec = await play(fay, "sales_en", [
            GOOD_ADVISER[0], GOOD_ADVISER[1],
            "I see. Not everyone needs Platinum: the Harbor Classic card has no annual fee at all.",
            "You can apply in the app or at a branch.",
            "Thank you!",
        ])
        steps = session.persona.scenario.steps
        by_id = {s.id: s for s in steps}
        assert [a.text for a in answers] == [
            by_id["needs"].say[0], by_id["fee"].say[0], by_id["classic"].say[0], by_id["close"].say[0],
            session.persona.scenario.closing,
        ]
        assert all(a.answered_by == "scenario" for a in answers)
        changes = rec.of(ScenarioStepChanged)
        assert [(c.step_id, c.reason) for c in changes] == [("needs", "start"), ("fee", "aim_met"),
                                                             ("classic", "branch"), ("close", "budget")]
        assert all(c.total == len(steps) and c.time_limit_s == 600 for c in changes)
        (ended,) = rec.of(ScenarioEnded)
        assert ended.reason == "completed" and ended.steps_visited == ("needs", "fee", "classic", "close")
        assert (await session.answer("One more thing?")).text == session.persona.scenario.closing  # it has ended
        report = await wait_for_file(report_path(settings, session.id))
        await fay.close_session(session.id)
    turns = report["transcript"]["turns"]
    assert turns[0] == {"speaker": "avatar", "text": session.persona.greeting, "start_s": None, "end_s": None}
    assert [t["speaker"] for t in turns[1:9]] == ["trainee", "avatar"] * 4
    assert all(t["start_s"] is not None and t["end_s"] >= t["start_s"] for t in turns[1:])
    assert report["steps_visited"] == ["needs", "fee", "classic", "close"] and report["ended_reason"] == "completed"
    card = report["scorecard"]
    assert report["error"] is None and card is not None, report["error"]
    close = next(c for c in card["criteria"] if c["criterion"] == "Compliance and close")
    (apply,) = close["checks"]
    assert apply["found"] and apply["quote"] in turns[apply["turn"]]["text"]
    assert turns[apply["turn"]]["speaker"] == "trainee"


@pytest.mark.parametrize(("said", "reason"), [
    ("Once you spend a lot over the year, the fee goes away.", "aim_met"),  # the sentence, in other words
    ("It is a very popular card with our customers.", None),  # neither: the customer waits (patience 2)
])
async def test_a_step_sentence_is_met_in_other_words(alone: Settings, said: str, reason: str | None) -> None:
    async with Fay(alone) as fay:
        session, answers, rec = await play(fay, "sales_en", [*GOOD_ADVISER[:2], said])
    changes = [(c.step_id, c.reason) for c in rec.of(ScenarioStepChanged)]
    if reason is None:
        assert changes[-1] == ("fee", "aim_met") and answers[-1].text == session.persona.scenario.steps[1].say[1]
    else:
        assert changes[-1] == ("foreign", reason), changes


async def test_difficulty_decides_the_objections_and_the_patience(alone: Settings) -> None:
    settings = alone
    folder = settings.personas_dir
    for level in ("easy", "hard"):
        (folder / f"sales_{level}.yaml").write_text(SALES_ALONE.replace("difficulty: medium", f"difficulty: {level}"),
                                                    encoding="utf-8")
    settings.personas_dir = folder
    silent = ["Hello.", "Right.", "Okay.", "Sure.", "Yes.", "Fine.", "Hm.", "Well.", "So.", "Indeed.", "Ok."]
    async with Fay(settings) as fay:
        easy, _, easy_rec = await play(fay, "sales_easy", silent)
        hard, _, hard_rec = await play(fay, "sales_hard", silent[:6])
    # easy: one objection (fee) is played and the customer waits 3 turns; hard: all objections, 1 turn each
    assert [c.step_id for c in easy_rec.of(ScenarioStepChanged)] == ["needs", "fee", "close"]
    assert [c.step_id for c in hard_rec.of(ScenarioStepChanged)] == ["needs", "fee", "foreign", "close"]
    assert [c.reason for c in hard_rec.of(ScenarioStepChanged)][1:] == ["budget"] * 3
    assert easy_rec.of(ScenarioEnded) and hard_rec.of(ScenarioEnded)
    assert easy.scenario is not None and hard.scenario is not None


async def test_the_time_limit_ends_the_scenario_between_turns(alone: Settings) -> None:
    settings = alone
    folder = settings.personas_dir
    (folder / "quick.yaml").write_text(SALES_ALONE.replace("time_limit_s: 600", "time_limit_s: 0.5"), encoding="utf-8")
    settings.personas_dir = folder
    async with Fay(settings) as fay:
        session, answers, rec = await play(fay, "quick", ["Hello, welcome to Harbor Bank."])
        ended = await rec.wait(ScenarioEnded, within=10)
        assert ended.reason == "time_limit" and ended.turn_id == 0
        report = await wait_for_file(report_path(settings, session.id))
        assert report["ended_reason"] == "time_limit"
        late = await session.answer("Sorry, where were we?")
        assert late.text == session.persona.scenario.closing


async def test_a_scoring_failure_keeps_the_transcript_with_the_error(alone: Settings) -> None:
    settings = alone
    settings.knowledge.embedder = "no-such-embedder"
    async with Fay(settings) as fay:
        said = ["你好，我准备好了。", "我在客服岗位有三年的工作经验。"]
        session, answers, _ = await play(fay, "interviewer_zh", said)
        await fay.close_session(session.id)
    report = json.loads(report_path(settings, session.id).read_text(encoding="utf-8"))
    assert report["scorecard"] is None and "no-such-embedder" in report["error"]
    assert [t["text"] for t in report["transcript"]["turns"]][1:] == [
        "你好，我准备好了。", answers[0].text, "我在客服岗位有三年的工作经验。", answers[1].text]
    assert answers[0].text == session.persona.scenario.steps[0].say[0]


# --- the report over HTTP, after a restart ---------------------------------------------------------------------


async def test_report_over_http_survives_a_restart_and_keeps_the_ai_score_beside_an_override(
        alone: Settings) -> None:
    settings = alone
    async def serve() -> TestServer:
        server = TestServer(create_app(Fay(settings)), host="127.0.0.1")
        await server.start_server()
        return server

    server = await serve()
    try:
        async with ClientSession(base_url=str(server.make_url(""))) as http:
            sids = []
            poor = GOOD_ADVISER[:2] + ["It is a good card.", "Really good.", "Cards are useful.", "Yes.", "Bye."]
            for lines in (poor, GOOD_ADVISER):
                async with http.post("/api/sessions", json={"persona": "sales_en", "trainee": "lin.wu"}) as r:
                    body = await r.json()
                    assert r.status == 201 and body["scenario"]["role"] == "customer", body
                sid = body["session_id"]
                for line in lines:
                    async with http.post(f"/api/sessions/{sid}/messages", json={"text": line}) as r:
                        stream = await r.text()
                assert "event: scenario_end" in stream
                async with http.delete(f"/api/sessions/{sid}") as r:
                    assert r.status == 200
                sids.append(sid)
            async with http.post("/api/sessions", json={"persona": "sales_en", "trainee": "no spaces"}) as r:
                assert r.status == 400 and "'trainee'" in (await r.json())["error"]
    finally:
        await server.close()

    server = await serve()  # a new process's view: only what is on disk
    try:
        async with ClientSession(base_url=str(server.make_url(""))) as http:
            poor, good = sids
            async with http.get(f"/api/sessions/{good}/report") as r:
                report = await r.json()
                assert r.status == 200, report
            assert [p["session_id"] for p in report["trend"]] == [poor, good]
            assert report["trend"][1]["current"] and report["trend"][0]["total"] < report["trend"][1]["total"]
            criteria = {c["criterion"]: c for c in report["scorecard"]["criteria"]}
            ai = criteria["Needs discovery"]["score"]
            override = {"criterion": "Needs discovery", "score": 4, "comment": "Asked, but did not listen."}
            async with http.post(f"/api/sessions/{good}/report/overrides", json=override) as r:
                after = await r.json()
                assert r.status == 200, after
            assert after["overrides"]["Needs discovery"]["ai_score"] == ai
            assert after["final"]["criteria"]["Needs discovery"] == 4
            assert after["scorecard"]["criteria"][0]["score"] == ai  # the AI's score is kept as it was
            bad = [({**override, "criterion": "Charm"}, 404, "no criterion 'Charm'"),
                   ({**override, "score": 11}, 400, "from 0 to 10"),
                   ({**override, "score": True}, 400, "'score'"),
                   ({**override, "comment": " "}, 400, "'comment'")]
            for body, status, words in bad:
                async with http.post(f"/api/sessions/{good}/report/overrides", json=body) as r:
                    out = await r.json()
                    assert r.status == status and words in out["error"], (body, out)
            for path in (f"/api/sessions/{'0' * 32}/report", "/api/sessions/..%2Fkeys/report"):
                async with http.get(path) as r:
                    out = await r.json()
                    assert r.status == 404 and "no report for session" in out["error"], out
            async with http.post(f"/api/sessions/{'0' * 32}/report/overrides", json=override) as r:
                assert r.status == 404
    finally:
        await server.close()
    result = CliRunner().invoke(cli, ["roleplay", "report", good, "--json"],
                                env={"FAY_DATA_DIR": str(settings.data_dir), "FAY_CONFIG": "/nonexistent"})
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["session_id"] == good and shown["overrides"]["Needs discovery"]["score"] == 4
    result = CliRunner().invoke(cli, ["roleplay", "report", good],
                                env={"FAY_DATA_DIR": str(settings.data_dir), "FAY_CONFIG": "/nonexistent"})
    assert result.exit_code == 0 and "Needs discovery" in result.output and "AI" in result.output, result.output
    result = CliRunner().invoke(cli, ["roleplay", "report", "0" * 32],
                                env={"FAY_DATA_DIR": str(settings.data_dir), "FAY_CONFIG": "/nonexistent"})
    assert result.exit_code != 0 and "no report for session" in result.output


# --- with an LLM, over the real voice path ---------------------------------------------------------------------


@pytest.mark.slow
async def test_a_scenario_over_the_voice_path_with_the_llm_playing_the_customer(
        settings: Settings, fake_llm: FakeLLM) -> None:
    from fay_piper import PiperTTS

    from fay_core.voice.audio import resample, silence, stream_pcm

    settings.llm = LLMSettings(model=fake_llm.model, api_base=fake_llm.url)
    tts = PiperTTS()
    trainee = ["What can I do for you today?",
               "How often do you travel abroad?",
               "The annual fee is waived after you spend one hundred and twenty thousand.",
               "There is no foreign transaction fee.",
               "You can apply in the app."]
    replies = ["I got a letter about the Platinum card.", "A few times a year. But what about the fee?",
               "Fine. And paying abroad?", "Good. How do I get it?"]
    fake_llm.enqueue(*(Reply(r) for r in replies))
    async with Fay(settings) as fay:
        session = await fay.create_session("sales_en")
        voice = await fay.assembly.add_voice(session)
        await voice.asr.warm_up()
        rec = Recorder(session.bus, TranscriptFinal, AgentTurnFinished, AvatarStoppedSpeaking, ScenarioStepChanged,
                       ScenarioEnded)
        for i, line in enumerate(trainee, start=1):
            chunks = [c async for c in tts.synthesize(line, language="en")]
            pcm = resample(b"".join(c.pcm for c in chunks), chunks[0].sample_rate, 16000)
            # paced like a microphone, which goes on sending silence: the turn gate may hold a pause up to
            # voice.turn.max_pause_ms (1200 ms) when it hears the sentence as unfinished
            await stream_pcm(session.bus, silence(300) + pcm + silence(1600))
            for _ in range(600):  # the avatar answers and finishes speaking before the trainee goes on
                if len(rec.of(AvatarStoppedSpeaking)) >= i:
                    break
                await asyncio.sleep(0.1)
            assert len(rec.of(AvatarStoppedSpeaking)) >= i, [(type(e).__name__, e) for e in rec.events]
        ended = await rec.wait(ScenarioEnded, within=5)
        report = await wait_for_file(report_path(settings, session.id), within=60)
    heard = [e.text for e in rec.of(TranscriptFinal)]
    assert len(heard) == len(trainee) and "abroad" in heard[1].lower(), heard
    answers = [e.text for e in rec.of(AgentTurnFinished)]
    assert answers[:4] == replies and answers[4] == session.persona.scenario.closing, answers
    assert ended.reason == "completed"
    # the LLM played the role with the current step in its system prompt
    systems = [r["messages"][0]["content"] for r in fake_llm.requests]
    steps = session.persona.scenario.steps
    assert "You play the customer" in systems[0] and steps[0].aim in systems[0]
    assert steps[1].aim in systems[1], systems[1]
    # the customer's LLM reads the demo bank's product facts (its knowledge base) as sources
    sources = [m["content"] for r in fake_llm.requests for m in r["messages"] if m["role"] == "user"]
    blocks = [text for text in sources if text.startswith("Reference sources")]
    assert any("foreign transaction" in text.lower() for text in blocks), sources
    turns = report["transcript"]["turns"]
    spoken = [t for t in turns if t["speaker"] == "trainee"]
    assert len(spoken) == len(trainee) and all(t["end_s"] - t["start_s"] > 0.5 for t in spoken), spoken
    assert report["scorecard"]["metrics"]["words_per_minute"] is not None
    needs = next(c for c in report["scorecard"]["criteria"] if c["criterion"] == "Needs discovery")
    assert any(k["found"] for k in needs["checks"]), needs


async def test_a_failing_llm_leaves_the_scripted_line_and_the_llm_plays_on_when_back(
        alone: Settings, fake_llm: FakeLLM) -> None:
    alone.llm = LLMSettings(model=fake_llm.model, api_base=fake_llm.url, retries=0)
    fake_llm.enqueue(Reply(status=500, error="upstream exploded"), Reply("Well, I travel a lot, actually."))
    async with Fay(alone) as fay:
        session = await fay.create_session("sales_en")
        rec = Recorder(session.bus, ErrorRaised)
        first = await session.answer(GOOD_ADVISER[0])
        second = await session.answer("Where do you usually spend the most?")
    assert first.answered_by == "fallback" and first.text == session.persona.scenario.steps[0].say[0]
    assert any("LLM" in e.message or "500" in e.message for e in rec.of(ErrorRaised)), rec.events
    assert second.answered_by == "llm" and second.text == "Well, I travel a lot, actually."


def test_keywords_match_whole_words_and_chinese_anywhere() -> None:
    from fay_core.roleplay.runner import mentioned

    said = "Happy to explain: apply in the App, after 120,000 spent. 年费可以免年费"
    assert mentioned(said, ["app", "apply", "120,000", "免年费", "plan", "pp"]) == ["app", "apply", "120,000", "免年费"]
    assert mentioned("I'm happy", ["app"]) == []
