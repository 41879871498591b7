"""One record for all nodes: the audit chain, role-play reports and declined questions in a real PostgreSQL.

The test starts a throw-away PostgreSQL 15 cluster (Debian's binaries, run as the ``postgres`` user: initdb
refuses root) on a free loopback port, and a Fay server whose settings read ``FAY_AUDIT__URL`` pointing at it.
Turns through that server land in the database, the chain verifies with ``fay audit verify``, a role-play report
and a declined question are queryable in SQL, several writers on separate connections form one chain, and a dead
database refuses the turn with 503 (the words are never answered unrecorded).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from click.testing import CliRunner, Result

from fay_core.cli import cli
from fay_core.app import Fay
from fay_core.audit_pg import PgAuditLog
from fay_core.errors import AuditUnavailable, ConfigError
from fay_core.pg import Database
from fay_core.server import create_app
from fay_core.settings import AuditSettings, load_settings
from fay_core.testing_postgres import Postgres

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(Postgres.bin_dir() is None, reason="PostgreSQL is not installed: make system-deps")


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    with Postgres() as pg:
        yield pg


def _personas(folder: Path) -> Path:
    """interviewer_en (a role-play: offline it asks its scripted lines and writes a report) and interviewer_faq
    (the same without the scenario: it answers from its one FAQ entry and declines the rest)."""
    folder.mkdir()
    text = (ROOT / "personas" / "interviewer_en.yaml").read_text(encoding="utf-8")
    (folder / "interviewer_en.yaml").write_text(text, encoding="utf-8")
    data = yaml.safe_load(text)
    del data["scenario"]
    (folder / "interviewer_faq.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return folder


class Node:
    """A Fay server (the one ``fay run`` serves: :func:`~fay_core.server.create_app`) with the record in
    PostgreSQL, its settings read from the environment as ``fay run`` reads them."""

    def __init__(self, fay: Fay, server: TestServer, http: ClientSession, env: dict[str, str]) -> None:
        self.fay, self.server, self.http, self.env = fay, server, http, env

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, str]:
        async with self.http.request(method, path, json=body) as r:
            return r.status, await r.text()

    async def session(self, persona: str) -> str:
        status, text = await self.call("POST", "/api/sessions", {"persona": persona})
        assert status == 201, text
        return str(json.loads(text)["session_id"])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def node(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Node]:
    tmp = tmp_path_factory.mktemp("node")
    env = {"FAY_DATA_DIR": str(tmp / "data"), "FAY_CONFIG": "/nonexistent",
           "FAY_PERSONAS_DIR": str(_personas(tmp / "personas")), "FAY_DEFAULT_PERSONA": "interviewer_faq",
           "FAY_AUDIT__URL": postgres.url, "FAY_VOICE__TTS__ONLINE": "never"}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        mp.chdir(tmp)  # no developer's .env
        settings = load_settings()
    assert settings.audit.url == postgres.url
    fay = Fay(settings)
    server = TestServer(create_app(fay), host="127.0.0.1")
    await server.start_server()
    try:
        async with ClientSession(base_url=str(server.make_url(""))) as http:
            yield Node(fay, server, http, env)
    finally:
        await server.close()


#: the module's async tests share the server's event loop
shared = pytest.mark.asyncio(loop_scope="module")


def _verify(env: dict[str, str], *args: str) -> Result:
    """``fay audit verify`` (in this process: the command's own code, without a second interpreter's imports)."""
    fay_env = {k: v for k, v in env.items() if k.startswith("FAY_")}
    unset = {k: None for k in os.environ if k.startswith("FAY_") and k not in fay_env}
    return CliRunner().invoke(cli, ["audit", "verify", *args], env={**unset, **fay_env})


@shared
async def test_turns_land_in_postgres_and_the_chain_verifies(postgres: Postgres, node: Node) -> None:
    sid = await node.session("interviewer_faq")
    status, text = await node.call("POST", f"/api/sessions/{sid}/messages",
                                   {"text": "How long does the interview take?"})
    assert status == 200 and "twenty minutes" in text
    rows = postgres.sql("SELECT kind, record->>'text', line FROM fay_audit WHERE session = %s ORDER BY seq", sid)
    kinds = [r[0] for r in rows]
    assert kinds.count("user") == 1 and kinds.count("answer") == 1
    assert ("user", "How long does the interview take?") in [(r[0], r[1]) for r in rows]
    # what the server's audit endpoint answers is what was sealed, read back from the database
    status, text = await node.call("GET", f"/api/sessions/{sid}/audit")
    assert status == 200
    assert [r["kind"] for r in json.loads(text)["records"]] == kinds
    done = _verify(node.env)  # FAY_AUDIT__URL: the database
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith("ok: postgresql://postgres@127.0.0.1") and "records" in done.stdout


@shared
async def test_a_declined_question_and_a_roleplay_report_are_queryable(postgres: Postgres, node: Node) -> None:
    sid = await node.session("interviewer_faq")
    status, text = await node.call("POST", f"/api/sessions/{sid}/messages",
                                   {"text": "Which football club won in 1998?"})
    assert status == 200, text
    declined = postgres.sql("SELECT question, tenant, persona FROM fay_declined WHERE session = %s", sid)
    assert declined == [("Which football club won in 1998?", "default", "interviewer_faq")]

    rp = await node.session("interviewer_en")
    status, text = await node.call("POST", f"/api/sessions/{rp}/messages",
                             {"text": "I worked three years in customer service at a bank."})
    assert status == 200, text
    status, text = await node.call("GET", f"/api/sessions/{rp}/report")
    assert status == 200, text
    report = json.loads(text)
    (stored,) = postgres.sql("SELECT report FROM fay_reports WHERE tenant = 'default' AND session_id = %s", rp)
    assert stored[0]["session_id"] == rp and stored[0]["persona"] == "interviewer_en"
    trainee_lines = [t["text"] for t in stored[0]["transcript"]["turns"] if t["speaker"] == "trainee"]
    assert trainee_lines == ["I worked three years in customer service at a bank."]
    assert report["transcript"] == stored[0]["transcript"]


@shared
async def test_the_console_reads_the_record_from_postgres(postgres: Postgres, node: Node) -> None:
    sid = await node.session("interviewer_faq")
    status, text = await node.call("POST", f"/api/sessions/{sid}/messages", {"text": "Can I bring my dog along?"})
    assert status == 200, text
    status, text = await node.call("GET", f"/api/console/audit?session={sid}")
    assert status == 200, text
    found = json.loads(text)
    assert found["total"] == len(postgres.sql("SELECT seq FROM fay_audit WHERE session = %s", sid)) >= 2
    status, text = await node.call("GET", f"/api/console/audit/export?format=jsonl&session={sid}")
    assert status == 200
    sealed = [r[0] for r in postgres.sql("SELECT line FROM fay_audit WHERE session = %s ORDER BY seq", sid)]
    assert text.splitlines() == sealed  # the lines as sealed: their hashes still check
    status, text = await node.call("GET", "/api/console/declined")
    assert status == 200, text
    assert "Can I bring my dog along?" in text  # from the database's records, not a file under data_dir
    assert not (Path(node.env["FAY_DATA_DIR"]) / "audit").exists()


def test_writers_on_separate_connections_form_one_chain(postgres: Postgres) -> None:
    """Four writers, two "nodes" (databases connections) each with two threads: one chain, no gap, no fork."""
    dbs = [Database(postgres.url), Database(postgres.url)]
    logs = [PgAuditLog(db, AuditSettings()) for db in dbs]
    (before,) = postgres.sql("SELECT count(*) FROM fay_audit")
    errors: list[BaseException] = []

    def writer(log: PgAuditLog, name: str) -> None:
        try:
            for i in range(40):
                log.write({"session": f"w-{name}", "kind": "user", "turn": i, "text": f"{name} {i} 你好"})
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(logs[i % 2], str(i))) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for db in dbs:
        db.close()
    assert not errors
    (after,) = postgres.sql("SELECT count(*) FROM fay_audit")
    assert after[0] - before[0] == 160
    result = logs[0].verify()
    assert result.ok, result.problem
    assert [r["text"] for r in logs[1].read("w-2")] == [f"2 {i} 你好" for i in range(40)]


def test_verify_names_a_changed_row(postgres: Postgres) -> None:
    db = Database(postgres.url)
    log = PgAuditLog(db, AuditSettings())
    try:
        log.write({"session": "tamper", "kind": "user", "turn": 1, "text": "transfer 100"})
        (seq,) = postgres.sql("SELECT max(seq) FROM fay_audit WHERE session = 'tamper'")[0]
        postgres.sql("UPDATE fay_audit SET line = replace(line, 'transfer 100', 'transfer 900') WHERE seq = %s "
                     "RETURNING seq", seq)
        result = log.verify()
        assert result.problem is not None and result.problem.line == seq and "hash mismatch" in result.problem.why
        out = _verify({"FAY_CONFIG": "/nonexistent"}, postgres.url)
        assert out.exit_code == 1 and f"fay_audit:{seq}: hash mismatch" in out.stderr
    finally:
        postgres.sql("UPDATE fay_audit SET line = replace(line, 'transfer 900', 'transfer 100') WHERE seq = %s "
                     "RETURNING seq", seq)
        db.close()
    assert log.verify().ok


def test_retention_deletes_the_expired_prefix_and_the_chain_still_verifies(postgres: Postgres) -> None:
    url = postgres.database("retention")
    clock = [dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)]
    db = Database(url)
    log = PgAuditLog(db, AuditSettings(retention_days=30), now=lambda: clock[0])
    try:
        start = clock[0]
        for day in range(0, 50, 10):  # records on Jan 1, 11, 21, 31 and Feb 10
            clock[0] = start + dt.timedelta(days=day)
            log.write({"session": "r", "kind": "user", "turn": day, "text": f"day {day}"})
        # the first write of Feb 10 ran the day's retention: Feb 10 - 30 days = Jan 11 noon, so only Jan 1 expired
        assert log.apply_retention() == []  # nothing more today
        rows = postgres.sql("SELECT seq, kind, record->>'text' FROM fay_audit ORDER BY seq", url=url)
        assert [r[2] for r in rows if r[1] == "user"] == ["day 10", "day 20", "day 30", "day 40"]
        assert rows[-1][1] == "retention" and rows[0][0] == 2
        (retention,) = postgres.sql("SELECT record FROM fay_audit WHERE kind = 'retention'", url=url)
        assert retention[0]["deleted"] == ["seq 1..1"] and retention[0]["last_seq"] == 1
        assert log.verify().ok, log.verify().problem
        postgres.sql("DELETE FROM fay_audit WHERE seq = 2 RETURNING seq", url=url)  # by hand: caught
        problem = log.verify().problem
        assert problem is not None and problem.line == 3 and "missing records" in problem.why, problem
    finally:
        db.close()


@shared
async def test_a_dead_database_refuses_the_turn_and_loses_no_words(postgres: Postgres, node: Node) -> None:
    sid = await node.session("interviewer_faq")
    postgres.stop()
    try:
        started = time.monotonic()
        status, text = await node.call("POST", f"/api/sessions/{sid}/messages", {"text": "My card was stolen"})
        took = time.monotonic() - started
        assert status == 503, text
        assert "cannot be recorded" in json.loads(text)["error"]  # the public message; the log names the database
        assert took < 10, f"the refusal took {took:.1f} s"
        with pytest.raises(AuditUnavailable) as info:  # the Python API says which database and what to do
            PgAuditLog(Database(postgres.url)).write({"kind": "user", "text": "hi"})
        assert f"audit database postgresql://postgres@127.0.0.1:{postgres.port}/fay" in str(info.value)
        assert "turns are refused until then" in str(info.value)
    finally:
        postgres.start()
    status, text = await node.call("GET", f"/api/sessions/{sid}")
    assert status == 200 and "My card was stolen" not in text  # not answered, not in history either
    # back up: the same words are taken (the node reconnects by itself), recorded first, then answered
    status, text = await node.call("POST", f"/api/sessions/{sid}/messages", {"text": "My card was stolen"})
    assert status == 200, text
    words = postgres.sql("SELECT record->>'text' FROM fay_audit WHERE session = %s AND kind = 'user'", sid)
    assert words == [("My card was stolen",)]
    assert _verify(node.env).exit_code == 0


def test_fay_audit_url_must_name_postgresql(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FAY_CONFIG", "/nonexistent")
    monkeypatch.setenv("FAY_AUDIT__URL", "mysql://db/fay")
    with pytest.raises(ConfigError, match="postgresql://"):
        load_settings()
