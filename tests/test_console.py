"""The console's API through a real server (offline answerer, real e5 embeddings, real Chroma): declined questions
grouped by similarity with counts, "add to knowledge" written to the persona's files and re-ingested with
progress (the question answered in a new session), uploads and deletes, conversation review, the charts' series,
and who may call it."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from aiohttp import ClientSession, FormData
from aiohttp.test_utils import TestServer
from test_knowledge import make_pdf

from fay_core.app import Fay
from fay_core.console.declined import group
from fay_core.console.review import TurnView, conversations, latest_latency, stats, transcript, turns
from fay_core.server import create_app
from fay_core.testing import test_settings

FAQ = {"faq": [
    {"id": "hours", "question": "What are your opening hours?",
     "questions": ["When do you open?", "What time does the branch close?"],
     "answer": "Branches are open Monday to Friday from 9:00 to 17:00."},
    {"id": "card", "question": "I lost my card. What should I do?", "questions": ["My card was stolen"],
     "answer": "Freeze the card in the app or call 400-800-1234."},
    {"id": "atm", "question": "What is the daily ATM withdrawal limit?", "questions": ["How much cash per day?"],
     "answer": "The daily ATM limit is 20,000."},
]}
TELLER = """\
name: Ava
language: en
greeting: Hello, I'm Ava.
knowledge:
  collections: [console-bank]
  paths: [../kb/en]
  only: true
  min_score: 0.895
  suggest_score: 0.885
"""
NO_FOLDER = ("name: Bo\nlanguage: en\ngreeting: Hi.\n"
             "knowledge:\n  faq:\n    - question: Hours?\n      answer: Nine to five.\n")
DOG = "Can I bring my dog into the branch?"
DOG_AGAIN = "Are dogs allowed in your branches?"
GOLD = "Do you sell gold coins?"
SAFE = "Safe deposit boxes. A small safe deposit box at Harbor Bank costs 120 a year, a large one 250 a year."

SUITE = """\
persona: ava
cases:
  - {id: atm, ask: "How much cash can I take out each day?", source: atm, contains: "20,000"}
  - {id: coins, ask: "Do you sell platinum coins?", declines: true}
  - {id: wrong, ask: "When do you open?", contains: "midnight"}
"""

shared = pytest.mark.asyncio(loop_scope="module")


@dataclass
class Served:
    fay: Fay
    server: TestServer
    url: str
    folder: Path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    root = tmp_path_factory.mktemp("console")
    folder = root / "kb" / "en"
    folder.mkdir(parents=True)
    (folder / "faq.yaml").write_text(yaml.safe_dump(FAQ), encoding="utf-8")
    personas = root / "personas"
    personas.mkdir()
    (personas / "ava.yaml").write_text(TELLER, encoding="utf-8")
    (personas / "bo.yaml").write_text(NO_FOLDER, encoding="utf-8")
    (personas / "evals").mkdir()
    (personas / "evals" / "ava.eval.yaml").write_text(SUITE, encoding="utf-8")
    fay = Fay(test_settings(root / "data", personas_dir=personas, default_persona="ava"))
    server = TestServer(create_app(fay), host="127.0.0.1")
    await server.start_server()
    yield Served(fay, server, str(server.make_url("")), folder)
    await server.close()


async def new_session(http: ClientSession, persona: str = "ava") -> str:
    async with http.post("/api/sessions", json={"persona": persona}) as r:
        assert r.status == 201
        return str((await r.json())["session_id"])


async def ask(http: ClientSession, sid: str, text: str) -> dict[str, Any]:
    """The answer message of one question."""
    async with http.post(f"/api/sessions/{sid}/messages", json={"text": text}) as r:
        body = await r.text()
        assert r.status == 200, body
    answers = [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]
    return next(a for a in answers if a["type"] == "answer")


async def get(http: ClientSession, path: str, status: int = 200) -> Any:
    async with http.get(path) as r:
        body = await r.json()
        assert r.status == status, body
        return body


async def finished(http: ClientSession, job: dict[str, Any]) -> dict[str, Any]:
    """Poll a job until it ends; every state seen on the way is checked for shape."""
    for _ in range(600):
        job = await get(http, f"/api/console/jobs/{job['id']}")
        assert job["phase"] in ("writing", "ingesting", "running", "done", "failed") and 0 <= job["fraction"] <= 1
        if job["state"] != "running":
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job['id']} did not end")


def dog_group(groups: list[dict[str, Any]]) -> dict[str, Any]:
    return next(g for g in groups if any(q["text"] == DOG for q in g["questions"]))


@shared
async def test_declined_questions_are_grouped_by_similarity_with_counts(served: Served) -> None:
    async with ClientSession(base_url=served.url) as http:
        one, two = await new_session(http), await new_session(http)
        assert (await ask(http, one, DOG))["text"] and (await ask(http, one, GOLD))["citations"] == []
        await ask(http, two, DOG_AGAIN)
        answered = await ask(http, two, "When do you open?")
        assert answered["citations"], answered  # answered: not in the list
        body = await get(http, "/api/console/declined")
    groups = body["groups"]
    dog = dog_group(groups)
    assert dog["count"] == 2 and dog["declined"] == 2 and dog["sessions"] == 2 and dog["persona"] == "ava"
    assert {q["text"] for q in dog["questions"]} == {DOG, DOG_AGAIN} and dog["resolved"] is None
    gold = next(g for g in groups if g["question"] == GOLD)
    assert gold["count"] == 1 and gold is not dog
    assert groups.index(dog) < groups.index(gold)  # largest first
    assert not any(q["text"] == "When do you open?" for g in groups for q in g["questions"])


def test_turns_pair_the_records_and_read_older_answers() -> None:
    base = {"session": "s1", "tenant": "default", "persona": "ava"}
    records = [
        {**base, "kind": "user", "turn": 1, "time": "2026-01-01T10:00:00", "text": "Hours?"},
        {**base, "kind": "user", "turn": 2, "time": "2026-01-01T10:01:00", "text": "Gold?"},
        {**base, "kind": "answer", "turn": 1, "time": "2026-01-01T10:00:01", "text": "9-5 [1]",
         "answered_by": "offline", "citations": [{"index": 1, "source": "faq.yaml"}],
         "latency_ms": {"agent_first_text": 12.5}},
        # written before answers carried 'declined': the offline hand-off cites nothing
        {**base, "kind": "answer", "turn": 2, "time": "2026-01-01T10:01:01", "text": "Sorry.",
         "answered_by": "offline", "citations": []},
        {**base, "tenant": "bank-b", "kind": "user", "turn": 1, "session": "s2", "time": "2026-01-01T10:02",
         "text": "x"},
        {**base, "kind": "disclosure", "turn": 0, "time": "2026-01-01T09:59:59", "via": "http"},
    ]
    views = turns(records, "default")
    assert [(v.turn, v.question, v.declined) for v in views] == [(1, "Hours?", False), (2, "Gold?", True)]
    assert latest_latency(views) == {"s1": 12.5}
    assert conversations(views) == [{"session_id": "s1", "persona": "ava", "started": "2026-01-01T10:00:00",
                                     "last": "2026-01-01T10:01:00", "turns": 2, "declined": 1, "unsure": 0}]
    days = stats(views, 3, today=dt.date(2026, 1, 2))["days"]
    assert days == [{"day": "2025-12-31", "turns": 0, "declined": 0, "unsure": 0},
                    {"day": "2026-01-01", "turns": 2, "declined": 1, "unsure": 0},
                    {"day": "2026-01-02", "turns": 0, "declined": 0, "unsure": 0}]
    assert [t["question"] for t in transcript(records, "s1")["turns"]] == ["Hours?", "Gold?"]


def test_grouping_keeps_apart_what_is_not_alike(embedder: Any) -> None:
    def view(q: str, n: int, declined: bool = True) -> TurnView:
        return TurnView(session=f"s{n}", persona="ava", turn=n, time=f"2026-01-0{n}T10:00:00", question=q,
                        answer="", declined=declined, unsure=not declined)
    views = [view(DOG, 1), view(DOG_AGAIN, 2), view(GOLD, 3), view("Can I buy gold bars from you?", 4, False),
             view("Do you offer mortgages for boats?", 5)]
    groups = group(views, lambda _p: embedder.embed_queries)
    assert [(g.question, g.count, g.declined, g.unsure) for g in groups] == [
        (GOLD, 2, 1, 1), (DOG, 2, 2, 0), ("Do you offer mortgages for boats?", 1, 1, 0)]
    # without an embedder, only the same wording is one group
    plain = group(views + [view(DOG.upper(), 6)], lambda _p: None)
    assert [g.count for g in plain if g.question == DOG] == [2] and len(plain) == 5

    def broken(texts: list[str]) -> Any:
        raise RuntimeError("embedder down")

    # a failing embedder: the list still comes, grouped by wording
    assert [g.as_json() for g in group(views + [view(DOG.upper(), 6)], lambda _p: broken)] == [
        g.as_json() for g in plain]


@shared
async def test_add_to_knowledge_writes_the_persona_file_and_answers_in_a_new_session(served: Served) -> None:
    async with ClientSession(base_url=served.url) as http:
        before = dog_group((await get(http, "/api/console/declined"))["groups"])
        answer = "Well-behaved dogs on a lead are welcome in every Harbor Bank branch."
        async with http.post("/api/console/declined/answer", json={
                "persona": "ava", "question": DOG, "answer": answer,
                "questions": [q["text"] for q in before["questions"]]}) as r:
            out = await r.json()
            assert r.status == 202, out
        assert out["entry"] == "en/console-faq.yaml#console-001"
        job = await finished(http, out["job"])
        assert job["state"] == "done" and job["phase"] == "done" and job["fraction"] == 1, job
        # the wordings were embedded when they were grouped (cached): the answer passage is what is new
        assert job["result"]["added"] == 1 and job["total"] >= 1 and job["done"] == job["total"]
        written = yaml.safe_load((served.folder / "console-faq.yaml").read_text("utf-8"))
        assert written["faq"] == [{"id": "console-001", "question": DOG, "answer": answer,
                                   "questions": [DOG_AGAIN]}]
        sid = await new_session(http)
        reply = await ask(http, sid, DOG_AGAIN)
        assert "on a lead" in reply["text"] and reply["citations"][0]["chunk_id"] == out["entry"], reply
        after = dog_group((await get(http, "/api/console/declined"))["groups"])
        assert after["resolved"] == out["entry"]
        listed = (await get(http, "/api/console/knowledge/ava/entries"))["entries"]
        mine = next(e for e in listed if e["id"] == out["entry"])
        assert mine["questions"] == [DOG_AGAIN] and mine["deletable"] and mine["kind"] == "faq"
        hand = next(e for e in listed if e["id"] == "en/faq.yaml#hours")
        assert hand["questions"] == ["When do you open?", "What time does the branch close?"]
        assert not hand["deletable"]
        # the entry the console added can be deleted again; the bank's own entries are not edited
        async with http.delete("/api/console/knowledge/ava/entries", params={"id": "en/faq.yaml#hours"}) as r:
            assert r.status == 409 and "edit that file" in (await r.json())["error"]
        async with http.delete("/api/console/knowledge/ava/entries", params={"id": out["entry"] + "x"}) as r:
            assert r.status == 404
        async with http.delete("/api/console/knowledge/ava/entries", params={"id": out["entry"]}) as r:
            assert r.status == 202
            gone = await finished(http, (await r.json())["job"])
        assert gone["state"] == "done" and gone["result"]["updated"] == 1
        assert yaml.safe_load((served.folder / "console-faq.yaml").read_text("utf-8")) == {"faq": []}
        assert (await ask(http, sid, DOG))["citations"] == []  # declined again


@shared
async def test_uploaded_pdf_becomes_answerable_and_a_deleted_one_goes_to_the_trash(served: Served,
                                                                                   tmp_path: Path) -> None:
    pdf = tmp_path / "safe deposit.pdf"
    make_pdf(pdf, [SAFE], title="Safe deposit boxes")
    question = "How much does a safe deposit box cost?"
    async with ClientSession(base_url=served.url) as http:
        sid = await new_session(http)
        assert (await ask(http, sid, question))["citations"] == []
        form = FormData()
        form.add_field("file", pdf.read_bytes(), filename=pdf.name, content_type="application/pdf")
        async with http.post("/api/console/knowledge/ava/documents", data=form) as r:
            out = await r.json()
            assert r.status == 202, out
        assert out["document"] == "uploads/safe-deposit.pdf"
        job = await finished(http, out["job"])
        assert job["state"] == "done" and job["result"]["added"] == 1, job
        reply = await ask(http, sid, question)
        assert "120 a year" in reply["text"] and reply["citations"][0]["source"] == "en/uploads/safe-deposit.pdf"
        listing = (await get(http, "/api/console/knowledge"))["personas"]
        ava = next(p for p in listing if p["persona"] == "ava")
        docs = {d["path"]: d for d in ava["documents"]}
        assert docs["uploads/safe-deposit.pdf"]["uploaded"] and "faq.yaml" in docs and ava["editable"]
        bo = next(p for p in listing if p["persona"] == "bo")
        assert not bo["editable"] and "knowledge folder" in bo["reason"]
        async with http.delete("/api/console/knowledge/ava/documents",
                               params={"path": "uploads/safe-deposit.pdf"}) as r:
            assert r.status == 202
            job = await finished(http, (await r.json())["job"])
        assert job["result"]["removed"] == 1 and not (served.folder / "uploads" / "safe-deposit.pdf").exists()
        trash = served.fay.settings.data_dir / "console" / "trash"
        assert [p.name.endswith("-safe-deposit.pdf") for p in trash.iterdir()] == [True]
        assert (await ask(http, sid, question))["citations"] == []


@shared
async def test_bad_requests_get_clear_errors(served: Served) -> None:
    async with ClientSession(base_url=served.url) as http:
        form = FormData()
        form.add_field("file", b"MZ\x90\x00", filename="tool.exe")
        async with http.post("/api/console/knowledge/ava/documents", data=form) as r:
            assert r.status == 400 and "Markdown, PDF, CSV" in (await r.json())["error"]
        form = FormData()
        form.add_field("file", b"%PDF-1.4 not really", filename="broken.pdf")
        async with http.post("/api/console/knowledge/ava/documents", data=form) as r:
            error = (await r.json())["error"]
        # refused before it reaches the folder (where it would stop every later ingest), the loader's reason said
        assert r.status == 400 and "cannot read this PDF" in error and "broken.pdf" in error, error
        assert not (served.folder / "uploads" / "broken.pdf").exists() and "fay-upload-" not in error
        async with http.post("/api/console/knowledge/ava/documents", json={"file": "x"}) as r:
            assert r.status == 400 and "multipart" in (await r.json())["error"]
        for body, words in (({"persona": "ava", "question": DOG}, "'answer'"),
                            ({"persona": "nobody", "question": DOG, "answer": "x"}, "unknown persona"),
                            ({"persona": "bo", "question": DOG, "answer": "x"}, "no knowledge folder"),
                            ({"persona": "ava", "question": DOG, "answer": "x", "questions": "y"}, "'questions'")):
            async with http.post("/api/console/declined/answer", json=body) as r:
                assert r.status in (400, 404, 409) and words in (await r.json())["error"], body
        # a hand-edited file that no longer loads: the job fails, saying which file and why; the entry is kept
        (served.folder / "notes.yaml").write_text("faq: [unclosed\n", encoding="utf-8")
        async with http.post("/api/console/declined/answer", json={
                "persona": "ava", "question": "Is there a car park?", "answer": "Yes, behind the branch."}) as r:
            job = await finished(http, (await r.json())["job"])
        (served.folder / "notes.yaml").unlink()
        assert job["state"] == "failed" and "notes.yaml" in job["error"] and "not valid YAML" in job["error"], job
        assert "car park" in (served.folder / "console-faq.yaml").read_text("utf-8")
        # fixed by hand: "Re-ingest" picks the entry up
        async with http.post("/api/console/knowledge/ava/ingest") as r:
            job = await finished(http, (await r.json())["job"])
        assert job["state"] == "done" and job["result"]["updated"] == 1, job
        sid = await new_session(http)
        assert "behind the branch" in (await ask(http, sid, "Is there a car park?"))["text"]
        async with http.post("/api/console/knowledge/bo/ingest") as r:
            assert r.status == 409 and "knowledge.paths" in (await r.json())["error"]
        await get(http, "/api/console/declined?days=0", 400)
        await get(http, "/api/console/jobs/nothing", 404)
        await get(http, "/api/console/sessions/nothing", 404)
        async with http.delete("/api/console/knowledge/ava/documents", params={"path": "../../personas/ava.yaml"}) as r:
            assert r.status == 404
        assert (served.folder / "faq.yaml").exists()


@shared
async def test_live_sessions_conversation_review_and_chart_series(served: Served) -> None:
    async with ClientSession(base_url=served.url) as http:
        sid = await new_session(http)
        await ask(http, sid, "What is the daily ATM withdrawal limit?")
        await ask(http, sid, GOLD)
        body = await get(http, "/api/console/sessions")
        live = next(s for s in body["live"] if s["session_id"] == sid)
        assert live["state"] == "listening" and live["channel"] == "text" and live["turns"] == 2
        assert live["latency_ms"] > 0 and live["persona"] == "ava"
        recent = next(c for c in body["recent"] if c["session_id"] == sid)
        assert recent["turns"] == 2 and recent["declined"] == 1
        review = await get(http, f"/api/console/sessions/{sid}")
        first, second = review["turns"]
        assert first["question"].startswith("What is the daily ATM") and "20,000" in first["answer"]
        assert first["citations"][0]["chunk_id"] == "en/faq.yaml#atm" and first["answered_by"] == "offline"
        assert not first["declined"] and second["declined"] and second["citations"] == []
        assert {"retrieved", "agent_first_text", "turn_finished"} <= set(first["latency_ms"])
        assert review["live"] and any(e["kind"] == "disclosure" for e in review["events"])
        stats = await get(http, "/api/console/stats?days=7")
        assert len(stats["days"]) == 7 and stats["days"][-1]["turns"] >= 2 and stats["days"][-1]["declined"] >= 1
        assert any(p["session"] == sid for p in stats["latency"]) and all(p["ms"] > 0 for p in stats["latency"])
        async with http.get("/console") as r:
            assert r.status == 200 and "console.js" in await r.text()


@shared
async def test_eval_runs_and_their_history(served: Served) -> None:
    async with ClientSession(base_url=served.url) as http:
        listed = await get(http, "/api/console/evals")
        assert listed["suites"] == [{"suite": "ava", "persona": "ava", "cases": 3, "description": ""}]
        async with http.post("/api/console/evals", json={"suite": "ava"}) as r:
            out = await r.json()
            assert r.status == 202, out
        job = await finished(http, out["job"])
        assert job["state"] == "done" and job["done"] == job["total"] == 3, job
        assert job["result"]["passed"] == 2 and job["result"]["failed"] == 1
        runs = (await get(http, "/api/console/evals"))["runs"]
        assert runs[0]["id"] == job["result"]["run"] and runs[0]["passed"] == 2 and runs[0]["answerer"] == "offline"
        run = await get(http, f"/api/console/evals/{runs[0]['id']}")
        wrong = next(c for c in run["cases"] if c["id"] == "wrong")
        assert not wrong["passed"] and "midnight" in wrong["failures"][0]
        assert set(wrong) == {"id", "passed", "answer", "sources", "declined", "latency_ms", "failures"}
        # the eval's sessions are tests, not customers: not among the conversations nor the declined questions
        recent = {c["session_id"] for c in (await get(http, "/api/console/sessions"))["recent"]}
        assert recent and not recent & set(run["sessions"]) and len(run["sessions"]) >= 3
        groups = (await get(http, "/api/console/declined"))["groups"]
        assert not any(q["text"] == "Do you sell platinum coins?" for g in groups for q in g["questions"])
        async with http.post("/api/console/evals", json={"suite": "nothing"}) as r:
            assert r.status == 404 and "known: ava" in (await r.json())["error"]
        await get(http, "/api/console/evals/20260101T000000Z-abcdef", 404)
        await get(http, "/api/console/evals/..%2Fx", 404)


@shared
async def test_audit_search_and_export(served: Served) -> None:
    async with ClientSession(base_url=served.url) as http:
        sid = await new_session(http)
        await ask(http, sid, "What is the daily ATM withdrawal limit, please?")
        found = await get(http, f"/api/console/audit?session={sid}&kind=user")
        assert found["total"] == 1 and found["records"][0]["text"].endswith("limit, please?")
        found = await get(http, "/api/console/audit?q=withdrawal+PLEASE")
        assert [(r["session"], r["kind"]) for r in found["records"]] == [(sid, "user")]  # every word, any case
        found = await get(http, f"/api/console/audit?session={sid}&q=atm+limit")
        assert [r["kind"] for r in found["records"]] == ["answer", "user"]  # newest first
        today = found["records"][0]["time"][:10]
        assert (await get(http, "/api/console/audit?q=please&until=2000-01-01"))["total"] == 0
        assert (await get(http, f"/api/console/audit?q=please&since={today}&until={today}"))["total"] == 1
        await get(http, "/api/console/audit?since=yesterday", 400)
        async with http.get("/api/console/audit/export", params={"session": sid, "format": "jsonl"}) as r:
            lines = (await r.read()).splitlines()
            assert r.status == 200 and "attachment" in r.headers["Content-Disposition"]
        raw = {json.loads(line)["hash"]: line for line in lines}
        on_disk = b"".join(p.read_bytes() for p in sorted((served.fay.settings.data_dir / "audit").glob("*.jsonl")))
        assert raw and all(line in on_disk.splitlines() for line in raw.values())  # byte for byte: hashes check
        async with http.get("/api/console/audit/export", params={"session": sid, "format": "csv"}) as r:
            rows = list(csv.reader(io.StringIO(await r.text())))
        assert rows[0][:3] == ["seq", "time", "session"] and len(rows) == len(lines) + 1
        await get(http, "/api/console/audit/export?format=xml", 400)


async def test_the_console_needs_the_token(tmp_path: Path) -> None:
    personas = tmp_path / "personas"
    personas.mkdir()
    (personas / "bo.yaml").write_text(NO_FOLDER, encoding="utf-8")
    fay = Fay(test_settings(tmp_path / "data", personas_dir=personas, default_persona="bo",
                            server={"token": "s3cret"}))
    server = TestServer(create_app(fay), host="127.0.0.1")
    await server.start_server()
    try:
        async with ClientSession(base_url=str(server.make_url(""))) as http:
            async with http.get("/api/console/declined") as r:
                assert r.status == 401 and "Bearer" in (await r.json())["error"]
            async with http.get("/api/console/declined", headers={"Authorization": "Bearer nope"}) as r:
                assert r.status == 401
            async with http.get("/api/console/declined", headers={"Authorization": "Bearer s3cret"}) as r:
                assert r.status == 200 and (await r.json())["groups"] == []
            async with http.get("/console") as r:  # the page is open: it holds nothing until a key is given
                assert r.status == 200
    finally:
        await server.close()
