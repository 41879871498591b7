"""Answerability on the shipped bank personas: graded answers, entity checks, multi-part questions, the uncertain
band reaching the LLM with its "not in the sources" exit.

Real personas (personas/bank_teller_*.yaml), real Chroma, the real e5-fast embedder; the LLM is the FakeLLM server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fay_core.app import Fay
from fay_core.events import AgentTurnFinished
from fay_core.knowledge.answerability import Names, elliptical, split_parts, terms
from fay_core.knowledge.normalise import normalise, respell, vocabulary
from fay_core.settings import LLMSettings, Settings
from fay_core.testing import FakeLLM, Reply, test_settings

PERSONAS = Path(__file__).resolve().parent.parent / "personas"
#: the shipped English teller with a wide suggestion band, so that the uncertain path has questions to show
WIDE = "bank_teller_en_wide"


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """One data folder for the module: the personas' knowledge is ingested once (the first Fay ingests, later ones
    find every file unchanged). The personas are the shipped ones plus :data:`WIDE`."""
    root = tmp_path_factory.mktemp("answerability")
    personas = root / "personas"
    personas.mkdir()
    for f in PERSONAS.glob("bank_teller_*.yaml"):
        text = f.read_text(encoding="utf-8").replace("../knowledge/", f"{PERSONAS.parent}/knowledge/")
        (personas / f.name).write_text(text, encoding="utf-8")
        if f.stem == "bank_teller_en":
            assert "suggest_score: 0.885" in text
            (personas / f"{WIDE}.yaml").write_text(text.replace("suggest_score: 0.885", "suggest_score: 0.80"),
                                                   encoding="utf-8")
    return test_settings(root / "data", personas_dir=personas)


def settings(shared: Settings, fake: FakeLLM | None = None) -> Settings:
    """The module's settings, with the FakeLLM as the LLM when given."""
    if fake is None:
        return shared
    return shared.model_copy(update={"llm": LLMSettings(model=fake.model, api_base=fake.url, retries=0)})


async def ask(fay: Fay, persona_id: str, question: str) -> AgentTurnFinished:
    session = await fay.create_session(persona_id)
    events: list[Any] = [e async for e in session.ask(question)]
    assert isinstance(events[-1], AgentTurnFinished)
    return events[-1]


def cited(done: AgentTurnFinished) -> list[str]:
    return [c.chunk_id.split("#", 1)[-1] for c in done.citations]


def test_parts_terms_and_names_are_read_from_the_text() -> None:
    assert split_parts("When do you close on Fridays, and do I need an appointment to open an account?") == [
        "When do you close on Fridays", "do I need an appointment to open an account?"]
    assert split_parts("ATM每天能取多少，跨行转账多久到账？") == ["ATM每天能取多少", "跨行转账多久到账？"]
    assert split_parts("I finish work at 5, so when do you close?") == ["I finish work at 5, so when do you close?"]
    assert split_parts("What is the saver rate?") == ["What is the saver rate?"]
    assert terms("a 3-year deposit or a 12 month one") == {36, 12}
    assert terms("存三年定期还是半年的") == {36, 6}
    names = Names(["hsbc", "(?<!白)金卡"])
    assert names.absent_in("What is HSBC's savings rate?", "harbor bank saver") == ["HSBC"]
    assert names.absent_in("海港金卡年费多少", "白金卡年费1,200元") == ["金卡"]
    assert names.absent_in("白金卡年费多少", "白金卡年费1,200元") == []



def test_questions_are_normalised_the_way_the_knowledge_is_written() -> None:
    assert normalise("ＡＰＰ上能开户吗？") == "APP上能开户吗?"  # full-width forms
    assert normalise("请问，开户要带啥啊") == "开户要带什么"
    assert normalise("卡丢了咋办") == "卡丢了怎么办"
    assert normalise("转帐多久到") == "转账多久到"
    assert normalise("帐篷") == "帐篷"
    assert normalise("周六营业不") == "周六营业吗"
    assert normalise("白金卡在国外刷收不收手续费") == "白金卡在国外刷收手续费吗"
    assert normalise("r u open on sundays") == "are you open on sundays"
    assert normalise("wanna open an acct") == "want to open an account"
    assert normalise("Is the Saver rate fixed?") == "Is the Saver rate fixed?"
    words = vocabulary("the mortgage interest rate; account and amount; car loans")
    assert respell("mortage intrest rate", words) == "mortgage interest rate"
    assert respell("acount", words) == "acount"  # account or amount: left as typed
    assert respell("plumber", words) == "plumber"


def test_an_elliptical_follow_up_names_no_subject_of_its_own() -> None:
    assert elliptical("what's the charge") and elliptical("要收钱吗") and elliptical("how long does it take?")
    assert not elliptical("can I close my account online?") and not elliptical("客服电话多少？")
    assert not elliptical("能提前取吗？")

async def test_offline_answers_declines_and_answers_two_parts(shared: Settings) -> None:
    async with Fay(settings(shared)) as fay:
        done = await ask(fay, "bank_teller_en", "do you charge me to send money")
        assert done.answered_by == "offline" and cited(done) == ["hb-en-007"] and "80 per transfer" in done.text
        # the question of issue 15: once declined (the right entry ranked first, under the threshold)
        done = await ask(fay, "bank_teller_en", "What does it cost to wire money overseas?")
        assert cited(done) == ["hb-en-007"] and "International transfers cost 80" in done.text
        # a product sheet's own phrasing: the Platinum card's rewards are on the cards sheet, not in the FAQ
        done = await ask(fay, "bank_teller_en", "How many reward points does the Platinum card earn?")
        assert cited(done) == ["harbor-bank-cards-product-sheet-harbor-platinum-"] and "1 reward point" in done.text
        # off-topic: the shipped band is narrow, so this is declined outright rather than offered as a guess
        done = await ask(fay, "bank_teller_en", "What time is it in Tokyo?")
        assert not done.citations and "colleague" in done.text and done.declined
        # another bank's product: never answered with Harbor Bank's own figures
        done = await ask(fay, "bank_teller_en", "What is HSBC's savings account interest rate?")
        assert not done.citations and "colleague" in done.text and "2.10%" not in done.text
        # a product the bank does not sell, and a term it does not offer
        for q in ("What's the annual fee on the Harbor Gold card?", "What rate does your 5-year fixed deposit pay?"):
            done = await ask(fay, "bank_teller_en", q)
            assert not done.citations and "colleague" in done.text, q
        done = await ask(fay, "bank_teller_en",
                         "When do you close on Fridays, and do I need an appointment to open an account?")
        assert cited(done) == ["hb-en-001", "hb-en-002"]
        assert "17:00" in done.text and "photo ID" in done.text and "[2]" in done.text
        done = await ask(fay, "bank_teller_zh", "工商银行的一年定期利率是多少？")
        assert not done.citations and "人工客服" in done.text


async def test_offline_offers_an_uncertain_match_as_a_suggestion(shared: Settings) -> None:
    async with Fay(settings(shared)) as fay:
        done = await ask(fay, WIDE, "do you skim anything off when I change currency")
        record = [r for r in fay.audit.read() if r["kind"] == "answer"][-1]
    assert record["unsure"] and not record["declined"]  # the console lists it as a low-confidence answer
    assert cited(done) == ["hb-en-027"]
    assert done.text.startswith("I'm not sure I understood. Did you mean:") and "no commission" in done.text
    assert "colleague" in done.text  # the check question's way out


async def test_the_uncertain_band_reaches_the_llm_with_a_not_in_the_sources_exit(
    shared: Settings, fake_llm: FakeLLM
) -> None:
    fake_llm.enqueue(Reply("NOT_IN_SOURCES"), Reply("Order it in the app or change it at a counter [1]."))
    async with Fay(settings(shared, fake_llm)) as fay:
        declined = await ask(fay, WIDE, "What time is it in Tokyo?")
        answered = await ask(fay, WIDE, "do you skim anything off when I change currency")
        records = [r for r in fay.audit.read() if r["kind"] == "answer"]
    assert [(r["declined"], r["unsure"]) for r in records[-2:]] == [(True, False), (False, True)]
    assert len(fake_llm.requests) == 2
    system = fake_llm.requests[0]["messages"][0]["content"]
    assert "NOT_IN_SOURCES" in system and "<sources>" in fake_llm.requests[0]["messages"][-2]["content"]
    # the exit is honoured: the customer hears the handoff, never the token
    assert declined.answered_by == "guardrail" and "colleague" in declined.text
    assert "NOT_IN_SOURCES" not in declined.text and not declined.citations
    assert answered.answered_by == "llm" and answered.text == "Order it in the app or change it at a counter [1]."
    assert cited(answered) == ["hb-en-027"]


async def test_a_confident_question_gets_no_exit_rule_and_a_declined_one_no_sources(
    shared: Settings, fake_llm: FakeLLM
) -> None:
    fake_llm.enqueue(Reply("Domestic transfers in the app are free [1]."), Reply("I can't help with HSBC."))
    async with Fay(settings(shared, fake_llm)) as fay:
        done = await ask(fay, "bank_teller_en", "Is there a fee for transfers?")
        other = await ask(fay, "bank_teller_en", "What is HSBC's savings account interest rate?")
    assert "NOT_IN_SOURCES" not in fake_llm.requests[0]["messages"][0]["content"]
    assert cited(done) == ["hb-en-007"]
    # the persona has tools, so the LLM is asked, but with no sources: nothing of Harbor Bank's to quote
    assert not any("Reference sources" in (m.get("content") or "") for m in fake_llm.requests[1]["messages"])
    assert not other.citations
