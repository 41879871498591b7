"""One customer's long messages must not make another customer wait: a short question while 20 sessions each send a
message of the longest accepted length (``server.max_message_chars``).

Today every turn embeds its whole question for retrieval on the default thread pool, and the embedder serialises
its calls behind one lock: a 4,000-character question is ~900 tokens, two 512-token windows, 0.6-1.4 s of CPU.
The short question queues behind all of them (12 s on a quiet 2-core machine, 57 s on a loaded one). It passes
once retrieval bounds the text it embeds (and/or lets short queries overtake long ones), see issue 17.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from fay_core.app import Fay

SHORT_BOUND_S = 3.0
LONG = ("I would like to know everything about my current account, the savings rates, the card fees, the transfer "
        "limits and the opening hours of the branch near my office, please. ")


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_a_short_question_is_answered_while_20_max_length_messages_are_in_flight(fay: Fay) -> None:
    limit = fay.settings.server.max_message_chars
    short_session = await fay.create_session("bank_teller_en")
    await short_session.answer("When do you open?")  # ingestion and model loading are not what is measured
    longs = [await fay.create_session("bank_teller_en") for _ in range(20)]
    # distinct texts: the embedder's cache must not make 19 of them free
    texts = [(f"Message {i}. " + LONG * (limit // len(LONG) + 1))[:limit] for i in range(len(longs))]
    in_flight = [asyncio.ensure_future(s.answer(t)) for s, t in zip(longs, texts, strict=True)]
    try:
        await asyncio.sleep(0.2)  # they have all been submitted
        started = time.monotonic()
        finished = await asyncio.wait_for(short_session.answer("what time do you open on saturday?"), 120)
        waited = time.monotonic() - started
    finally:
        await asyncio.wait_for(asyncio.gather(*in_flight, return_exceptions=True), 180)
    assert "13:00" in finished.text
    assert waited < SHORT_BOUND_S, f"the short question waited {waited:.1f} s behind 20 long messages"
