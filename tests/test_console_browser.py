"""The console in headless Chromium: a declined question appears in the declined list with its count, "Add to
knowledge" (typed in the page, followed to the end of its re-ingest) turns it into an answered one in a new
session, and a PDF uploaded in the page becomes answerable; an eval suite is run from the page (its history and
cases shown), and the audit log searched and exported as CSV. The server wants a token; the page is given it in its
key field. A screenshot is saved under ``build/test-artifacts/`` (or ``$FAY_TEST_ARTIFACTS``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from test_browser import CHROMIUM, ROOT, _require_tools, artifact
from test_console import DOG, DOG_AGAIN, FAQ, SAFE, SUITE, TELLER, ask, new_session
from test_knowledge import make_pdf
from test_roleplay_report_browser import run_driver

from fay_core.app import Fay
from fay_core.server import create_app
from fay_core.testing import test_settings

DRIVER = ROOT / "tests" / "browser" / "console.mjs"
TOKEN = "console-test-token"
pytestmark = pytest.mark.slow


async def test_console_answers_a_declined_question_and_an_uploaded_pdf(tmp_path: Path) -> None:
    node = _require_tools()
    folder = tmp_path / "kb" / "en"
    folder.mkdir(parents=True)
    (folder / "faq.yaml").write_text(yaml.safe_dump(FAQ), encoding="utf-8")
    personas = tmp_path / "personas"
    personas.mkdir()
    (personas / "ava.yaml").write_text(TELLER, encoding="utf-8")
    (personas / "evals").mkdir()
    (personas / "evals" / "ava.eval.yaml").write_text(SUITE, encoding="utf-8")
    pdf = tmp_path / "safe-deposit.pdf"
    make_pdf(pdf, [SAFE], title="Safe deposit boxes")
    fay = Fay(test_settings(tmp_path / "data", personas_dir=personas, default_persona="ava",
                            server={"token": TOKEN}))
    server = TestServer(create_app(fay), host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with ClientSession(base_url=url, headers=auth) as http:
            sid = await new_session(http)
            assert (await ask(http, sid, DOG))["citations"] == []  # declined
            await ask(http, sid, "What are your opening hours?")
            other = await new_session(http)
            assert (await ask(http, other, DOG_AGAIN))["citations"] == []
        shot = artifact("console.png")
        result = await run_driver(node, {
            "url": url, "token": TOKEN, "session": sid, "question": DOG, "chromium": CHROMIUM, "timeout_ms": 60000,
            "answer": "Well-behaved dogs on a lead are welcome in every Harbor Bank branch.", "pdf": str(pdf),
            "suite": "ava", "audit_q": "dog branch", "screenshot": str(shot)}, driver=DRIVER)
        assert result["ok"] and not result["errors"], result
        assert not [c for c in result["console"] if c.startswith("error") and "401" not in c], result["console"]
        assert "token" in (result["withoutKey"] or "")  # before the key is typed: the server's 401, said
        group = result["group"]
        assert group["count"] == 2 and not group["resolvedBefore"]
        assert {q.rsplit(" ×", 1)[0] for q in group["questions"]} == {DOG, DOG_AGAIN}
        assert result["charts"]["points"] >= 3 and result["charts"]["bars"] >= 1
        assert result["review"] == {"turns": 2, "declined": 1}
        assert result["addJob"][-1] == "done:done" and result["resolved"].endswith("en/console-faq.yaml#console-001")
        assert result["uploadJob"][-1] == "done:done" and result["jobText"] == "done"
        assert result["document"] == "uploads/safe-deposit.pdf"
        assert any("120 a year" in t for t in result["uploadEntries"]), result["uploadEntries"]
        # the eval run in the page: its history row and cases, the wrong expectation failing
        assert result["evalRuns"] == 1
        verdicts = {c["id"]: c["verdict"] for c in result["evalCases"]}
        assert verdicts == {"atm": "pass", "coins": "pass", "wrong": "FAIL"}, result["evalCases"]
        assert "midnight" in next(c["failures"] for c in result["evalCases"] if c["id"] == "wrong")
        # the audit search finds the dog question's records (the question twice, plus answers citing the entry)
        assert result["audit"]["total"] >= 2 and result["audit"]["shown"] == result["audit"]["total"]
        assert result["csvHead"].startswith("seq,time,session,tenant,turn,kind")
        # a new session: both are answered now, from the entry the page added and from the PDF it uploaded
        async with ClientSession(base_url=url, headers=auth) as http:
            fresh = await new_session(http)
            dog = await ask(http, fresh, DOG_AGAIN)
            assert "on a lead" in dog["text"] and dog["citations"][0]["chunk_id"] == "en/console-faq.yaml#console-001"
            box = await ask(http, fresh, "How much does a safe deposit box cost?")
            assert "120 a year" in box["text"] and box["citations"][0]["source"] == "en/uploads/safe-deposit.pdf"
        assert shot.stat().st_size > 10_000
    finally:
        await server.close()

