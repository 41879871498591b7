"""Redaction: card, phone, resident ID, e-mail and IBAN never reach the audit log or the server log.

Detectors on their own (check digits, dates, every written and spoken form, and the numbers they must leave
alone), the plugin hook and settings, the log filter, and end to end: a real ``fay run`` at DEBUG with the Harbor
Bank persona and its demo plugin, and a spoken turn through the voice pipeline (Piper voice, whisper).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import io
import uuid
import json
import logging
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import ClientSession

from fay_core import hookimpl
from fay_core.app import Fay
from fay_core.events import AgentTurnFinished, TranscriptFinal
from fay_core.hookspecs import RegisterRedactor
from fay_core.plugins import Plugins
from fay_core.redaction import (
    RedactingFilter,
    Redactor,
    Span,
    default_redactor,
    install_log_filter,
    log_tag,
    redact_attributes,
    resident_id_ok,
)
from fay_core.settings import LLMSettings, RedactionSettings, Settings
from fay_core.testing import FakeLLM, Recorder, Reply

ROOT = Path(__file__).resolve().parent.parent
R = default_redactor()


def red(text: str) -> str:
    return R.redact(text)


# --- cards ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "4111111111111111", "4111 1111 1111 1111", "4111-1111-1111-1111", "5555 5555 5555 4444",
    "3782 822463 10005",  # Amex, 15 digits in its 4-6-5 groups
    "6250 9410 0652 8599",  # UnionPay
    "4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1",  # whisper, digit by digit
    "四一一一一一一一一一一一一一一一",  # Chinese digits
    "４１１１１１１１１１１１１１１１",  # full-width
])
def test_card_numbers_are_masked_with_their_last_four(text: str) -> None:
    last4 = "".join(c for c in R.redact(text) if c.isdigit())
    assert red(f"card {text} please") == f"card [card ****{last4}] please"
    assert last4 in ("1111", "4444", "0005", "8599")


@pytest.mark.parametrize("text", [
    "4111111111111112",  # fails Luhn: an order number
    "order 4111 1111 1111 1112",
    "41111111111111110000",  # a Luhn-valid card inside a longer number is not a card
    "1234567812345670",  # Luhn-valid, but no card starts with 1
    "ref HB4111111111111111",  # part of a code
])
def test_numbers_that_are_not_cards_stay(text: str) -> None:
    assert red(text) == text


# --- phones -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "13812345678", "138 1234 5678", "138-1234-5678", "+86 138 1234 5678", "+8613812345678", "0086 13812345678",
    "1 3 8 1 2 3 4 5 6 7 8", "一三八一二三四五六七八", "幺三八幺二三四五六七八",
    "010-12345678", "(0755) 8888 1234", "021 6666 8888", "0 1 0 8 8 8 8 1 2 3 4",
    "+44 20 7946 0958", "+1 415 555 2671", "+852 2123 4567",
])
def test_phone_numbers_in_every_form_are_masked(text: str) -> None:
    assert red(f"call {text}, thanks") == "call [phone], thanks"
    assert red(f"我的电话是{text}。") == "我的电话是[phone]。"


@pytest.mark.parametrize("text", [
    "95999", "call 95588 or 95999", "400-820-8888", "800 820 8888", "12345678901",  # 12: no mobile prefix
    "1381234567",  # ten digits: not a mobile
])
def test_service_numbers_and_short_numbers_stay(text: str) -> None:
    assert red(text) == text


# --- resident IDs -----------------------------------------------------------------------------------------


def test_resident_id_check_digit_birth_date_and_x() -> None:
    assert resident_id_ok("11010519491231002X") and resident_id_ok("11010519491231002x")  # GB 11643's example
    assert resident_id_ok("440306199003071232") and resident_id_ok("310104200002290049")  # 29 Feb 2000
    assert not resident_id_ok("110105194912310021")  # wrong check digit
    assert not resident_id_ok("310104199902290049")  # right check digit, but 1999 had no 29 February
    assert not resident_id_ok("110105209912310010")  # born in 2099
    assert not resident_id_ok("310104200002290049", today=dt.date(1999, 12, 31))  # not born yet
    spoken = "一一〇一〇五一九四九一二三一〇〇二X"
    for text in ("11010519491231002X", "身份证11010519491231002x。", "440306 19900307 1232", spoken):
        assert "[id]" in red(text) and "1949" not in red(text) and "1990" not in red(text), red(text)
    assert red("ID 110105194912310021") == "ID 110105194912310021"
    assert red("ID 310104199902290049") == "ID 310104199902290049"


# --- e-mail and IBAN --------------------------------------------------------------------------------------


def test_email_addresses_are_masked_in_latin_and_chinese_text() -> None:
    assert red("write to alice.harper+bank@example.co.uk today") == "write to [email] today"
    assert red("我的邮箱是chen_jing@qq.com谢谢") == "我的邮箱是[email]谢谢"
    assert red("mail 13812345678@163.com") == "mail [email]"  # one mask, not a phone inside an address
    assert red("twitter @harborbank, not an address") == "twitter @harborbank, not an address"


def test_ibans_are_masked_when_their_mod_97_checks() -> None:
    assert red("IBAN GB82 WEST 1234 5698 7654 32 please") == "IBAN [iban] please"
    assert red("DE89370400440532013000.") == "[iban]."
    assert red("gb82 west 1234 5698 7654 32") == "[iban]"
    assert red("GB82 WEST 1234 5698 7654 33") == "GB82 WEST 1234 5698 7654 33"  # wrong check


# --- what stays -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "Your balance is 2,000.00 HBD.", "12480.55", "100000.00", "on 2026-11-18 at 09:30", "2026年11月18日",
    "product HB-TD-12M", "account A-1001-01", "HB-CA-01", "the 12-month deposit pays 2.60% a year",
    "time 2026-12-02T00:55:11.123+00:00", "session 3f2a9c4b1d8e4f6a8b7c6d5e4f3a2b1c", "十一月一日，第一二三名",
    "a fee of 1,200 yuan", "9,800,000,000,000.00",
])
def test_amounts_dates_codes_and_ordinary_text_stay(text: str) -> None:
    assert red(text) == text


def test_several_kinds_in_one_text_and_redacting_twice_changes_nothing() -> None:
    text = "card 4111 1111 1111 1111 13812345678, id 11010519491231002X, mail a@b.cn, GB82WEST12345698765432"
    once = red(text)
    assert once == "card [card ****1111] [phone], id [id], mail [email], [iban]"
    assert red(once) == once


def test_redact_value_masks_every_string_and_large_integer_recursively() -> None:
    value = {"args": {"card": 4111111111111111, "n": 5, "ok": True, "amount": 12480.55},
             "list": ["phone 13812345678", ("mail a@b.cn",)], "k13812345678": "keys stay"}
    assert R.redact_value(value) == {
        "args": {"card": "[card ****1111]", "n": 5, "ok": True, "amount": 12480.55},
        "list": ["phone [phone]", ["mail [email]"]], "k13812345678": "keys stay",
    }
    assert redact_attributes({"fay.question": "card 4111111111111111", "fay.turn": 3, "tags": ("a@b.cn",)}) == {
        "fay.question": "card [card ****1111]", "fay.turn": 3, "tags": ("[email]",)}


# --- plugins and settings ---------------------------------------------------------------------------------


class PassportDetector:
    """A bank's own kind: passport numbers like E12345678."""

    kind = "passport"

    def find(self, text: str) -> Iterator[Span]:
        import re

        for m in re.finditer(r"\b[EG]\d{8}\b", text):
            yield Span(m.start(), m.end(), self.kind)


class PassportPlugin:
    @hookimpl
    def register_redactors(self, register: RegisterRedactor) -> None:
        register(PassportDetector())


def test_a_plugin_adds_a_detector_and_settings_choose_the_built_ins(settings: Settings) -> None:
    plugins = Plugins(settings).load()
    plugins.register(PassportPlugin(), name="passports")
    assert "redactor:passport" in next(i for i in plugins.infos if i.name == "passports").provides
    text = "passport E12345678, card 4111111111111111, mail a@b.cn"
    assert plugins.redactor().redact(text) == "passport [passport], card [card ****1111], mail [email]"
    settings.redaction = RedactionSettings(kinds=["card"])
    assert plugins.redactor().redact(text) == "passport [passport], card [card ****1111], mail a@b.cn"
    settings.redaction = RedactionSettings(enabled=False)
    assert plugins.redactor().redact(text) == text


def test_a_plugin_registering_something_else_is_named() -> None:
    class Broken:
        @hookimpl
        def register_redactors(self, register: RegisterRedactor) -> None:
            register(lambda text: [])  # type: ignore[arg-type]

    plugins = Plugins()
    plugins.register(Broken(), name="broken")
    info = next(i for i in plugins.infos if i.name == "broken")
    assert "cannot register" in info.error and "Detector" in info.error


def test_unknown_redaction_kinds_are_a_settings_error(tmp_path: Path) -> None:
    from fay_core.errors import ConfigError
    from fay_core.settings import load_settings

    with pytest.raises(ConfigError, match=r"redaction\.kinds\.1 \(FAY_REDACTION__KINDS__1\)"):
        load_settings(data_dir=tmp_path, redaction={"kinds": ["card", "passport"]})
    with pytest.raises(ConfigError, match="unknown redaction kind.s. passport"):
        Redactor.builtin(["card", "passport"])


# --- the log filter ---------------------------------------------------------------------------------------


def test_the_log_filter_masks_messages_arguments_and_tracebacks() -> None:
    logger = logging.getLogger("fay.test.redaction")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    try:
        install_log_filter(logger=logger)
        install_log_filter(logger=logger)  # again: still one filter
        assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
        logger.warning("customer said %r", "my card is 4111 1111 1111 1111")
        logger.info("phone %s", 13812345678)
        try:
            raise ValueError("bad account for chen@qq.com")
        except ValueError:
            logger.exception("tool failed for 11010519491231002X")
    finally:
        logger.removeHandler(handler)
    text = out.getvalue()
    assert "[card ****1111]" in text and "[phone]" in text and "[email]" in text and "[id]" in text
    for raw in ("4111 1111", "13812345678", "chen@qq.com", "11010519491231002X"):
        assert raw not in text, text
    assert "ValueError: bad account for [email]" in text  # the traceback is kept, masked


def test_the_log_filter_writes_session_ids_as_their_tag_whoever_logs_them() -> None:
    sid = uuid.uuid4().hex
    digest = hashlib.sha256(b"x").hexdigest()  # 64 hex digits: not a session id
    logger = logging.getLogger("fay.test.redaction.ids")
    logger.propagate = False
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    try:
        install_log_filter(logger=logger)
        logger.warning("session %s: barge-in stopped turn 3 (chain %s)", sid, digest)
        try:
            raise RuntimeError(f"peer {sid} gone")
        except RuntimeError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    text = out.getvalue()
    assert sid not in text and text.count(log_tag(sid)) == 2 and digest in text, text


def test_no_log_tag_reads_as_personal_data() -> None:
    # a tag like "#fb722e41f2" followed by words once passed the IBAN check ("session #[iban] (connection closed)")
    redactor = default_redactor()
    for n in range(20000):  # (the old "#" + 10 hex digits: 12 of these lines lost their tag to the IBAN mask)
        line = f"session {log_tag(uuid.UUID(int=n).hex)} closed (connection closed)"
        assert redactor.redact(line) == line, line


# --- end to end: fay run at DEBUG, the Harbor Bank persona and its demo plugin ----------------------------

CARD, PHONE, ID, EMAIL = "4111 1111 1111 1111", "138 1234 5678", "11010519491231002X", "alice.harper@example.com"
RAW = [CARD, CARD.replace(" ", ""), PHONE, PHONE.replace(" ", ""), ID, EMAIL, "1234 5678", "19491231"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _events(stream: str) -> list[dict[str, object]]:
    return [json.loads(line[5:]) for line in stream.splitlines() if line.startswith("data:")]


async def _start_fay(tmp_path: Path, fake: FakeLLM) -> tuple[asyncio.subprocess.Process, str, Path]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAY_")}
    env.update(FAY_DATA_DIR=str(tmp_path / "data"), HOME=str(tmp_path), FAY_CONFIG="/nonexistent",
               FAY_LOG_LEVEL="DEBUG", FAY_DEFAULT_PERSONA="bank_teller_en", FAY_LLM__MODEL=fake.model,
               FAY_LLM__API_BASE=fake.url, FAY_LLM__RETRIES="0", LITELLM_LOCAL_MODEL_COST_MAP="True")
    log = tmp_path / "server.log"
    with log.open("wb") as f:  # noqa: ASYNC230 - a local file, before the server runs
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "fay_core", "run", "--host", "127.0.0.1", "--port", str(port),
            cwd=tmp_path, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=f)
    base = f"http://127.0.0.1:{port}"
    async with ClientSession() as http:
        for _ in range(600):
            assert proc.returncode is None, log.read_text()[-3000:]
            try:
                async with http.get(f"{base}/ready") as r:
                    if r.status == 200:
                        return proc, base, log
            except OSError:
                pass
            await asyncio.sleep(0.2)
    proc.kill()
    raise AssertionError("fay run was not ready in 120 s")


@pytest.mark.timeout(300)
async def test_fay_run_keeps_personal_data_out_of_the_audit_and_the_server_log(
    tmp_path: Path, seeded_data: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.enqueue(
        Reply(f"I have blocked the card {CARD}. We will call you on {PHONE}."),
        Reply("Thank you, your details are noted."),
        # the model asks for the balance twice: once properly, once with the card number as the account
        Reply(tool_calls=[{"id": "b1", "name": "account_balance", "arguments": {}},
                          {"id": "b2", "name": "account_balance",
                           "arguments": {"account": CARD.replace(" ", ""), "customer_id": ID}}]),
        Reply("Your Harbor Everyday balance is 12480.55."),
        # repeating a number the customer gave two turns ago: the guardrail withholds it and logs it (WARNING)
        Reply(f"Your phone number is {PHONE.replace(' ', '')}."),
    )
    proc, base, log = await _start_fay(tmp_path, fake_llm)
    try:
        async with ClientSession(base_url=base) as http:
            async with http.post("/api/sessions", json={"persona": "bank_teller_en",
                                                        "customer_token": "demo-alice-token"}) as r:
                assert r.status == 201
                sid = (await r.json())["session_id"]
            owner = {"X-Fay-Customer-Token": "demo-alice-token"}
            answers = []
            for text in (f"My card {CARD} was stolen, my phone is {PHONE}",
                         f"My resident ID is {ID} and my e-mail {EMAIL}",
                         "What is my balance?",
                         "Which phone number do you have for me?"):
                async with http.post(f"/api/sessions/{sid}/messages", json={"text": text}, headers=owner) as r:
                    assert r.status == 200
                    answers.append(_events(await r.text()))
            async with http.get(f"/api/sessions/{sid}", headers=owner) as r:
                history = json.dumps(await r.json(), ensure_ascii=False)
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)

    # the balance tool answered for the signed-in customer, and the customer sees their own words back
    returned = {e["call_id"]: e for e in answers[2] if e.get("type") == "tool_returned"}
    assert {a["account"] for a in json.loads(str(returned["b1"]["result"]))["accounts"]} == {"A-1001-01", "A-1001-02"}
    assert CARD.replace(" ", "") in str(returned["b2"]["result"])  # the tool got the real value
    assert "12480.55" in str(answers[2][-1]["text"])
    assert CARD in history and ID in history and EMAIL in history  # the owner's history keeps real values
    assert CARD in json.dumps(fake_llm.requests[1]["messages"])  # so does what the model reads next

    audit = "".join(p.read_text(encoding="utf-8") for p in (tmp_path / "data" / "audit").glob("*.jsonl"))
    server_log = log.read_text(encoding="utf-8")
    assert "DEBUG" in server_log and "unsupported number(s) [phone] in the LLM answer" in server_log, server_log
    for raw in RAW:
        assert raw not in audit, f"{raw!r} in the audit log"
        assert raw not in server_log, f"{raw!r} in the server log"
    records = [json.loads(line) for line in audit.splitlines()]
    users = [r["text"] for r in records if r["kind"] == "user"]
    assert users[:2] == ["My card [card ****1111] was stolen, my phone is [phone]",
                         "My resident ID is [id] and my e-mail [email]"]
    answer1, _, answer3, _ = [r for r in records if r["kind"] == "answer"]
    assert answer1["text"] == "I have blocked the card [card ****1111]. We will call you on [phone]."
    card_call = next(t for t in answer3["tools"] if t["call_id"] == "b2")
    assert card_call["arguments"]["account"] == "[card ****1111]" and card_call["arguments"]["customer_id"] == "C1001"
    assert card_call["model_arguments"] == {"account": "[card ****1111]", "customer_id": "[id]"}
    assert "[card ****1111]" in card_call["result"]


# --- a spoken turn ----------------------------------------------------------------------------------------

VOICE_PERSONA = """
name: Vera
language: en
voice: {engine: piper, fallback: [espeak]}
system_prompt: You are Vera, a bank teller. Answer briefly.
"""


@pytest.mark.timeout(180)
async def test_a_spoken_phone_number_is_masked_in_the_audit_record_of_the_transcript(
    settings: Settings, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    from fay_core.voice.audio import resample, silence, stream_pcm
    from fay_piper import PiperTTS

    (tmp_path / "personas").mkdir()
    (tmp_path / "personas" / "voice_en.yaml").write_text(VOICE_PERSONA, encoding="utf-8")
    settings.personas_dir = tmp_path / "personas"
    settings.llm = LLMSettings(model=fake_llm.model, api_base=fake_llm.url)
    fake_llm.enqueue(Reply("Thank you, noted."))
    chunks = [c async for c in PiperTTS().synthesize(
        "My phone number is one three eight one two three four five six seven eight.")]
    speech = resample(b"".join(c.pcm for c in chunks), chunks[0].sample_rate, 16000)
    async with Fay(settings) as fay:
        session = await fay.create_session("voice_en")
        voice = await fay.assembly.add_voice(session)
        await voice.asr.warm_up()
        rec = Recorder(session.bus)
        await stream_pcm(session.bus, silence(300) + speech + silence(1600))
        final = await rec.wait(TranscriptFinal)
        await rec.wait(AgentTurnFinished, within=60)
    digits = "".join(c for c in final.text if c.isdigit())
    assert digits == "13812345678", final.text  # whisper wrote the number
    (user,) = [r for r in fay.audit.read(session.id) if r["kind"] == "user"]
    assert user["source"] == "voice" and "[phone]" in user["text"] and not any(c.isdigit() for c in user["text"])
    assert session.history.messages[0].content == final.text  # the model reads what was said
