"""The LLM path: real HTTP and SSE through litellm to an OpenAI-compatible server started by the test."""

from __future__ import annotations

from fay_core.app import Fay
from fay_core.events import AgentTextDelta, AgentTurnFinished, ErrorRaised
from fay_core.settings import LLMSettings
from fay_core.testing import FakeLLM, Reply


async def test_streamed_answer_through_litellm(settings, fake_llm: FakeLLM) -> None:
    settings.llm = LLMSettings(model=fake_llm.model, api_base=fake_llm.url)
    fake_llm.enqueue(Reply("Our branches open at nine.", chunks=["Our ", "branches ", "open ", "at nine."]))
    async with Fay(settings) as fay:
        session = await fay.create_session("bank_teller_en")
        events = [e async for e in session.ask("When do you open?")]
    deltas = [e.text for e in events if isinstance(e, AgentTextDelta)]
    assert deltas == ["Our ", "branches ", "open ", "at nine."]
    finished = events[-1]
    assert isinstance(finished, AgentTurnFinished)
    assert finished.text == "Our branches open at nine." and finished.answered_by == "llm"
    sent = fake_llm.requests[0]
    assert sent["stream"] is True
    assert sent["messages"][0]["role"] == "system" and "Harbor Bank" in sent["messages"][0]["content"]
    assert sent["messages"][-1] == {"role": "user", "content": "When do you open?"}


async def test_history_is_sent_on_the_next_turn(settings, fake_llm: FakeLLM) -> None:
    settings.llm = LLMSettings(model=fake_llm.model, api_base=fake_llm.url)
    async with Fay(settings) as fay:
        session = await fay.create_session("interviewer_en")  # not knowledge-only: small talk goes to the LLM
        await session.answer("My name is Lin.")
        await session.answer("What is my name?")
    roles = [(m["role"], m["content"]) for m in fake_llm.requests[1]["messages"][1:]]
    assert roles == [
        ("user", "My name is Lin."), ("assistant", "You said: My name is Lin."), ("user", "What is my name?")
    ]


async def test_dead_endpoint_falls_back_and_records_the_question(settings) -> None:
    # a port nobody listens on: connection refused at once
    settings.llm = LLMSettings(model="openai/fake", api_base="http://127.0.0.1:9/v1", timeout_s=5)
    async with Fay(settings) as fay:
        session = await fay.create_session("bank_teller_en")
        events = [e async for e in session.ask("What are your opening hours?")]
        errors = [e for e in events if isinstance(e, ErrorRaised)]
        finished = events[-1]
        assert errors and "LLM failed" in errors[0].message
        assert finished.answered_by == "fallback" and "Monday to Friday" in finished.text
        records = fay.audit.read(session.id)
    assert records[0]["kind"] == "user" and records[0]["text"] == "What are your opening hours?"
    assert any(r["kind"] == "answer" and r["error"] for r in records)


async def test_http_error_from_the_llm_is_reported(settings, fake_llm: FakeLLM) -> None:
    settings.llm = LLMSettings(model=fake_llm.model, api_base=fake_llm.url, retries=1)
    fake_llm.enqueue(Reply(status=500, error="upstream exploded"), Reply(status=500, error="upstream exploded"))
    async with Fay(settings) as fay:
        session = await fay.create_session("bank_teller_en")
        finished = await session.answer("How do I fly to the moon?")
    assert finished.error and "LLM failed" in finished.error
    assert "colleague" in finished.text  # the offline answerer declined instead of guessing
    assert len(fake_llm.requests) == 2  # one retry, then the fallback
