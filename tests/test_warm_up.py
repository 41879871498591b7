"""`fay run` warms up in the background: the first visitor finds the knowledge indexed and the models loaded."""

from __future__ import annotations

from fay_core.app import Fay
from fay_core.knowledge import persona_collections


async def test_warm_up_prepares_knowledge_and_speech_without_listing_a_session(fay: Fay) -> None:
    took = await fay.warm_up("bank_teller_en")
    assert took > 0 and fay.sessions == {}
    kb = fay.knowledge.base()
    persona = fay.personas.get("bank_teller_en")
    assert all(kb.has(c) for c in persona_collections(persona))
    asr = fay.plugins.pick("asr", fay.settings.voice.asr.engine)
    assert asr.model_dir  # resolved and loaded by the warm-up, not by this test
    session = await fay.create_session("bank_teller_en")
    finished = await session.answer("What are your opening hours?")
    assert finished.citations and finished.answered_by == "offline"


async def test_warm_up_of_a_broken_persona_is_logged_not_raised(fay: Fay) -> None:
    assert await fay.warm_up("no_such_persona") >= 0
