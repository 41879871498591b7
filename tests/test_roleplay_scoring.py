"""Role-play scoring: transcripts, speech metrics, offline evidence with the real e5 embedder, the LLM judge over
real HTTP (FakeLLM through litellm), and ``fay roleplay score`` as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fay_core.brain.llm import LLMConfig
from fay_core.errors import TranscriptError
from fay_core.persona import Persona, load_persona, parse_persona
from fay_core.roleplay import Scorecard, Transcript, score_transcript, speech_metrics
from fay_core.testing import FakeLLM, Reply

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "data" / "roleplay"
INTERVIEWER = ROOT / "personas" / "interviewer_en.yaml"


def _bench(split: str, name: str) -> Transcript:
    return Transcript.from_dict(json.loads((BENCH / split / f"{name}.json").read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def interviewer() -> Persona:
    return load_persona(INTERVIEWER)


def _assert_verbatim(card: Scorecard, transcript: Transcript) -> None:
    """Every quote of the card is text of the trainee turn it names."""
    for c in card.criteria:
        for k in c.checks:
            if k.found:
                assert k.turn is not None and k.quote
                assert transcript.turns[k.turn].speaker == "trainee" and k.quote in transcript.turns[k.turn].text
            else:
                assert k.quote is None and k.turn is None
        for v in c.violations:
            assert transcript.turns[v.turn].speaker == "trainee" and v.quote in transcript.turns[v.turn].text


# --- transcripts ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "message"), [
    ({"turns": [{"speaker": "avatar", "text": "Hi"}, {"speaker": "coach", "text": "Hello"}]},
     "turns[1].speaker: 'coach' is not a speaker (use 'trainee' or 'avatar')"),
    ({"turns": [{"speaker": "trainee"}]}, "turns[0].text: missing"),
    ({"turns": [{"speaker": "trainee", "text": "x", "start_s": 5, "end_s": 2}]},
     "turns[0].end_s: 2 is before start_s 5"),
    ({"turns": [{"speaker": "trainee", "text": "x", "start_s": "soon"}]}, "turns[0].start_s: expected seconds"),
    ({"turns": [{"speaker": "trainee", "text": "x", "end_s": -1}]}, "turns[0].end_s: -1 is not a time"),
    ({"turns": "hello"}, "turns: expected a list of turns"),
    (["not", "an", "object"], "a transcript is a JSON object"),
])
def test_a_bad_transcript_names_the_turn_and_the_field(data: Any, message: str) -> None:
    with pytest.raises(TranscriptError) as err:
        Transcript.from_dict(data, "t.json")
    assert str(err.value).startswith("t.json: ") and message in str(err.value)
    assert err.value.status == 400


def test_a_transcript_file_that_is_not_json_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text('{"turns": [\n  {"speaker": "trainee",, }\n]}')
    with pytest.raises(TranscriptError, match=r"t\.json:2: not JSON"):
        Transcript.load(path)
    with pytest.raises(TranscriptError, match="no such transcript file"):
        Transcript.load(tmp_path / "missing.json")


# --- speech metrics -------------------------------------------------------------------------------------


def test_speech_metrics_from_the_turns_timings() -> None:
    t = Transcript.from_dict({"turns": [
        {"speaker": "avatar", "text": "Tell me about yourself.", "start_s": 0.0, "end_s": 2.0},
        {"speaker": "trainee", "text": "Um, I worked, like, in a call centre, you know.", "start_s": 3.0, "end_s": 9.0},
        {"speaker": "avatar", "text": "Why this job?", "start_s": 8.5, "end_s": 10.0},  # cuts in
        {"speaker": "trainee", "text": "I like helping people.", "start_s": 14.0, "end_s": 17.0},
    ]})
    m = speech_metrics(t)
    assert m["fillers"] == 3  # um, ", like,", "you know" (not "I like")
    assert m["talk_share"] == round(9 / 12.5, 3)
    assert m["words_per_minute"] == round(14 / (9 / 60), 1)
    assert m["longest_pause_s"] == 4.0
    assert m["response_latency_mean_s"] == 2.5 and m["response_latency_max_s"] == 4.0
    assert m["interruptions_by_avatar"] == 1 and m["interruptions_by_trainee"] == 0


def test_metrics_without_timings_are_null_and_chinese_counts_characters() -> None:
    t = Transcript.from_dict({"turns": [
        {"speaker": "avatar", "text": "请介绍一下自己。"},
        {"speaker": "trainee", "text": "嗯，那个，我做了三年客服。"},
    ]})
    m = speech_metrics(t)
    assert m["fillers"] == 2 and m["trainee_words"] == 10  # 嗯 那 个 我 做 了 三 年 客 服
    for key in ("talk_share", "words_per_minute", "fillers_per_minute", "longest_pause_s", "response_latency_mean_s",
                "interruptions_by_trainee"):
        assert m[key] is None


# --- offline scoring ------------------------------------------------------------------------------------


async def test_the_good_candidate_outscores_the_poor_one_with_verbatim_evidence(interviewer: Persona,
                                                                                embedder: Any) -> None:
    good, poor = _bench("report", "interview_en_good"), _bench("report", "interview_en_poor")
    g = await score_transcript(interviewer, good, embedder=embedder)
    p = await score_transcript(interviewer, poor, embedder=embedder)
    for gc, pc in zip(g.criteria, p.criteria, strict=True):
        assert gc.score is not None and pc.score is not None and gc.score > pc.score, (gc, pc)
    assert g.total is not None and p.total is not None and g.total > p.total
    _assert_verbatim(g, good)
    _assert_verbatim(p, poor)
    assert sum(k.found for c in g.criteria for k in c.checks) >= 7
    assert g.method == "offline" and g.metrics["trainee_turns"] == 4


async def test_a_violation_costs_points_and_quotes_the_trainee(interviewer: Persona, embedder: Any) -> None:
    poor = _bench("tune", "interview_en_poor")
    card = await score_transcript(interviewer, poor, embedder=embedder)
    empathy = next(c for c in card.criteria if c.criterion == "Empathy")
    assert [v.avoid for v in empathy.violations] == ["I told the customer it was their own fault."]
    assert "his own problem" in empathy.violations[0].quote
    assert empathy.score == max(10 * sum(k.found for k in empathy.checks) / 3 - 3, 0)
    _assert_verbatim(card, poor)


async def test_english_checks_on_a_chinese_session_score_low_with_a_note(interviewer: Persona,
                                                                          embedder: Any) -> None:
    """A check in the wrong language: the multilingual embedder still runs, every quote it gives is the trainee's
    Chinese words, and the scorecard says that the scores run low and why."""
    zh = _bench("report", "interview_zh_good")
    card = await score_transcript(interviewer, zh, embedder=embedder)
    _assert_verbatim(card, zh)
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in k.quote or "") for c in card.criteria for k in c.checks
               if k.found)
    assert "in English but the trainee spoke Chinese" in (card.note or "")
    same = await score_transcript(interviewer, _bench("report", "interview_en_good"), embedder=embedder)
    assert same.note is None


async def test_an_empty_rubric_keeps_the_metrics_with_a_note(embedder: Any) -> None:
    persona = parse_persona("name: Plain\n", "plain.yaml")
    card = await score_transcript(persona, _bench("report", "interview_en_good"), embedder=embedder)
    assert card.criteria == [] and card.total is None and "no scenario.rubric" in (card.note or "")
    assert card.metrics["trainee_turns"] == 4


async def test_a_criterion_without_checks_is_not_scored_offline(embedder: Any) -> None:
    persona = parse_persona(
        "name: R\nscenario:\n  kind: interview\n  rubric:\n    - criterion: Warmth\n      description: Friendly.\n"
        "    - criterion: Experience\n      weight: 2\n      checks: [I have worked in customer service for years.]\n",
        "r.yaml")
    card = await score_transcript(persona, _bench("report", "interview_en_good"), embedder=embedder)
    warmth, experience = card.criteria
    assert warmth.score is None and "not scored offline" in (warmth.note or "")
    assert experience.score == 10.0 and card.total == 100.0  # the unscored criterion is out of the total


async def test_the_scorecard_survives_its_json(interviewer: Persona, embedder: Any) -> None:
    card = await score_transcript(interviewer, _bench("report", "interview_en_medium"), embedder=embedder)
    data = json.loads(json.dumps(card.to_dict()))
    assert set(data) >= {"criteria", "metrics", "total"}
    assert set(data["criteria"][0]) >= {"criterion", "score", "max_score", "checks", "violations"}
    assert set(data["criteria"][0]["checks"][0]) >= {"check", "found", "turn", "quote"}
    assert Scorecard.from_dict(data).to_dict() == data


# --- the LLM judge ----------------------------------------------------------------------------------------


def _llm(fake: FakeLLM) -> LLMConfig:
    return LLMConfig(model=FakeLLM.model, api_base=fake.url, first_token_timeout_s=5, timeout_s=10, retries=0)


async def test_a_fabricated_quote_is_dropped_with_its_credit(interviewer: Persona, embedder: Any,
                                                            fake_llm: FakeLLM) -> None:
    t = _bench("report", "interview_en_good")
    real = t.turns[3].text
    empathy = interviewer.scenario.rubric[1]
    made_up = "I gave him a full refund on the spot, no questions asked."
    fake_llm.enqueue(json.dumps({"criteria": [{
        "criterion": "empathy", "reasoning": "Listened, acknowledged, apologised.", "score": 10,
        "checks": [{"check": empathy.checks[0], "found": True, "turn": 3, "quote": "  I LISTENED and gave her all "
                    "the space she needed to tell me what happened "},  # case, spaces, punctuation differ: verified
                   {"check": empathy.checks[1], "found": True, "turn": 3, "quote": made_up},
                   {"check": empathy.checks[2], "found": True, "turn": 1, "quote": real.split(". ")[-1]}],
        "violations": [{"avoid": empathy.avoid[0], "turn": 3, "quote": "It was your own fault."}]}]}))
    card = await score_transcript(interviewer, t, embedder=embedder, llm=_llm(fake_llm))
    assert "Transcript:" in fake_llm.requests[0]["messages"][1]["content"]
    judged = card.criteria[1]
    assert judged.method == "llm" and judged.reasoning == "Listened, acknowledged, apologised."
    assert [k.found for k in judged.checks] == [True, False, True]
    assert judged.checks[2].turn == 3  # the judge named turn 1; the quote is in turn 3
    assert judged.score == round(10 - 10 / 3, 1)  # the fabricated check's share is gone
    assert judged.violations == []  # the violation's quote is not in the transcript either
    assert {d.get("quote") for d in judged.dropped} == {made_up, "It was your own fault."}
    assert all(k.quote != made_up for k in judged.checks)
    assert card.criteria[0].method == "offline"  # the judge left Clarity out: its offline score stands
    assert card.method == "llm"
    _assert_verbatim(card, t)


@pytest.mark.parametrize("reply", [Reply("Overall a strong candidate, I'd say 8/10."), Reply(status=500)])
async def test_a_judge_reply_that_is_not_json_falls_back_to_offline(interviewer: Persona, embedder: Any,
                                                                    fake_llm: FakeLLM, reply: Reply) -> None:
    t = _bench("report", "interview_en_good")
    offline = await score_transcript(interviewer, t, embedder=embedder)
    fake_llm.enqueue(reply)
    card = await score_transcript(interviewer, t, embedder=embedder, llm=_llm(fake_llm))
    why = "judge reply not JSON" if reply.status == 200 else "judge failed"
    assert card.method.startswith(f"offline ({why}")
    assert card.total == offline.total and [c.score for c in card.criteria] == [c.score for c in offline.criteria]


# --- the command line -------------------------------------------------------------------------------------


def _fay(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAY_")}
    env.update(FAY_DATA_DIR=str(tmp_path / "data"), HOME=str(tmp_path),
               PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "plugins"), env.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "fay_core", "roleplay", *args], env=env, capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)


@pytest.mark.slow  # two processes, each loading the embedder
def test_fay_roleplay_score_prints_json_and_a_table(tmp_path: Path) -> None:
    transcript = BENCH / "report" / "interview_en_good.json"
    run = _fay(tmp_path, "score", str(INTERVIEWER), str(transcript), "--json")
    assert run.returncode == 0, run.stderr
    card = json.loads(run.stdout)
    assert [c["criterion"] for c in card["criteria"]] == ["Clarity", "Empathy", "Problem solving"]
    assert card["total"] > 60 and card["metrics"]["trainee_turns"] == 4
    table = _fay(tmp_path, "score", str(INTERVIEWER), str(transcript))
    assert table.returncode == 0 and "Empathy" in table.stdout and "total" in table.stdout


def test_fay_roleplay_score_refuses_bad_input_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"turns": [{"speaker": "interviewer", "text": "Hi"}]}))
    run = _fay(tmp_path, "score", str(INTERVIEWER), str(bad))
    assert run.returncode == 2 and "turns[0].speaker: 'interviewer' is not a speaker" in run.stderr
    assert "Traceback" not in run.stderr
    plain = tmp_path / "plain.yaml"
    plain.write_text("name: Plain\n")
    run = _fay(tmp_path, "score", str(plain), str(BENCH / "report" / "interview_en_good.json"))
    assert run.returncode == 2 and "no scenario.rubric" in run.stderr
