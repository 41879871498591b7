"""The audit log's hash chain: it verifies after real use, and `fay audit verify` names the first broken line.

Writes from several threads and processes and across midnight, restarts, retention, a torn last line, a signing
key, `fay audit export`, and a real `fay run` killed with SIGKILL mid-answer.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from fay_core.audit import AuditLog
from fay_core.audit_chain import GENESIS, seal, verify
from fay_core.audit_cli import CSV_COLUMNS, audit
from fay_core.errors import ConfigError
from fay_core.settings import AuditSettings, load_settings
from fay_core.testing import FakeLLM, fay_env, start_fay_run

ROOT = Path(__file__).resolve().parent.parent
DAY1 = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)


class Clock:
    """A clock that ticks ``step`` on every reading, from ``start``; ``jump`` moves it (thread-safe)."""

    def __init__(self, start: dt.datetime, step: dt.timedelta = dt.timedelta(seconds=1)) -> None:
        self.t, self.step, self._lock = start, step, threading.Lock()

    def __call__(self) -> dt.datetime:
        with self._lock:
            self.t += self.step
            return self.t

    def jump(self, **delta: float) -> None:
        with self._lock:
            self.t += dt.timedelta(**delta)


def _three_days(folder: Path, per_day: int = 10) -> AuditLog:
    """``per_day`` records on each of three days (2026-03-01..03), sessions s0/s1 alternating."""
    clock = Clock(DAY1)
    log = AuditLog(folder, now=clock)
    for day in range(3):
        for i in range(per_day):
            log.write({"session": f"s{i % 2}", "kind": "user", "turn": i, "text": f"day {day} line {i + 1}"})
        clock.jump(days=1)
    return log


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _broken(folder: Path, key: bytes | None = None) -> tuple[str, int, str]:
    result = verify(folder, key)
    assert result.problem is not None, result.summary()
    return result.problem.file, result.problem.line, result.problem.why


# --- a chain that verifies ----------------------------------------------------------------------------------


def test_threads_across_midnight_make_one_chain(tmp_path: Path) -> None:
    clock = Clock(dt.datetime(2026, 3, 1, 23, 58, 20, tzinfo=dt.UTC))  # 100 ticks: midnight at the 100th write
    log = AuditLog(tmp_path / "audit", now=clock)

    def writer(k: int) -> None:
        for i in range(50):
            log.write({"session": f"t{k}", "kind": "user", "text": f"thread {k} #{i} 你好"})

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = verify(tmp_path / "audit")
    assert result.ok and result.files == 2 and result.records == 200, result.summary()
    first, second = sorted((tmp_path / "audit").glob("*.jsonl"))
    assert (first.name, second.name) == ("2026-03-01.jsonl", "2026-03-02.jsonl")
    last_of_first = json.loads(_lines(first)[-1])
    first_of_second = json.loads(_lines(second)[0])
    assert first_of_second["prev"] == last_of_first["hash"] and first_of_second["seq"] == last_of_first["seq"] + 1
    assert sorted(r["seq"] for r in log.read()) == list(range(1, 201))
    assert len(log.read("t2")) == 50


def test_verify_while_records_are_written_sees_a_whole_chain(tmp_path: Path) -> None:
    log = AuditLog(tmp_path)
    log.write({"kind": "user", "text": "first"})
    done = threading.Event()

    def writer() -> None:
        for i in range(300):
            log.write({"kind": "answer", "text": "x" * (i * 37 % 5000)})  # long lines: an append takes a while
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    checks = []
    while not done.is_set():
        checks.append(verify(tmp_path))
    thread.join()
    assert checks and all(c.ok for c in checks), [c.summary() for c in checks if not c.ok][:1]
    assert verify(tmp_path).records == 301


def test_a_restarted_log_continues_the_chain(tmp_path: Path) -> None:
    clock = Clock(DAY1)
    AuditLog(tmp_path, now=clock).write({"kind": "user", "text": "before the restart"})
    AuditLog(tmp_path, now=clock).write({"kind": "user", "text": "after the restart"})
    records = AuditLog(tmp_path).read()
    assert [r["seq"] for r in records] == [1, 2] and records[0]["prev"] == GENESIS
    assert records[1]["prev"] == records[0]["hash"]
    assert verify(tmp_path).ok


def test_two_processes_appending_to_one_folder_make_one_chain(tmp_path: Path) -> None:
    folder = tmp_path / "audit"
    gate = tmp_path / "go"  # all three start writing together (a process that ran alone tests nothing)
    script = ("import sys, time; from pathlib import Path; from fay_core.audit import AuditLog\n"
              "log = AuditLog(Path(sys.argv[1])); (Path(sys.argv[3]).parent / ('ready-' + sys.argv[2])).touch()\n"
              "while not Path(sys.argv[3]).exists(): time.sleep(0.005)\n"
              "for i in range(60): log.write({'session': sys.argv[2], 'kind': 'user', 'text': str(i)})\n")
    names = ("p1", "p2", "p3")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(folder), name, str(gate)]) for name in names]
    deadline = time.monotonic() + 60
    while not all((gate.parent / f"ready-{n}").exists() for n in names) and time.monotonic() < deadline:
        time.sleep(0.01)
    gate.touch()
    assert [p.wait(60) for p in procs] == [0, 0, 0]
    result = verify(folder)
    assert result.ok and result.records == 180, result.summary()
    sessions = [r["session"] for r in AuditLog(folder).read()]
    assert sessions.count("p1") == sessions.count("p3") == 60
    assert sessions != sorted(sessions), "the processes should have interleaved (one ran alone: not a real test)"


def test_a_clock_set_back_keeps_writing_to_the_newest_file(tmp_path: Path) -> None:
    clock = Clock(DAY1 + dt.timedelta(days=1))
    log = AuditLog(tmp_path, now=clock)
    log.write({"kind": "user", "text": "on the 2nd"})
    clock.jump(days=-1)  # NTP moved the clock back over midnight
    log.write({"kind": "user", "text": "stamped the 1st"})
    assert [p.name for p in tmp_path.glob("*.jsonl")] == ["2026-03-02.jsonl"]
    assert log.read()[1]["time"].startswith("2026-03-01") and verify(tmp_path).ok


def test_lone_surrogates_and_chinese_verify_and_read_back(tmp_path: Path) -> None:
    log = AuditLog(tmp_path)
    text = "bad \ud800 byte 你好"
    log.write({"session": "s", "kind": "user", "text": text})
    assert verify(tmp_path).ok
    assert log.read("s")[0]["text"] == text
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("*.jsonl"))
    assert b"\\ud800" in raw and "你好".encode() in raw


def test_a_record_may_not_carry_chain_fields(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="seq"):
        AuditLog(tmp_path).write({"kind": "user", "seq": 3})


def test_a_torn_last_line_is_kept_as_a_record_and_the_chain_goes_on(tmp_path: Path) -> None:
    clock = Clock(DAY1)
    AuditLog(tmp_path, now=clock).write({"kind": "user", "text": "whole"})
    day = tmp_path / "2026-03-01.jsonl"
    with day.open("ab") as f:
        f.write(b'{"seq": 2, "prev": "abc", "text": "cut sh')  # power lost mid-write
    assert _broken(tmp_path)[:2] == ("2026-03-01.jsonl", 2)
    AuditLog(tmp_path, now=clock).write({"kind": "user", "text": "after"})
    assert verify(tmp_path).ok
    torn, after = AuditLog(tmp_path).read()[1:]
    assert torn["kind"] == "torn" and "cut sh" in torn["text"] and after["text"] == "after"


# --- a chain that is broken: the first bad line, by FILE:LINE ------------------------------------------------


def _edit(path: Path, index: int, old: bytes, new: bytes) -> None:
    lines = _lines(path)
    assert old in lines[index]
    lines[index] = lines[index].replace(old, new)
    path.write_bytes(b"".join(lines))


def test_an_edited_line_is_named(tmp_path: Path) -> None:
    _three_days(tmp_path)
    _edit(tmp_path / "2026-03-02.jsonl", 2, b"day 1 line 3", b"day 1 line X")
    assert _broken(tmp_path)[:2] == ("2026-03-02.jsonl", 3)
    assert "hash mismatch" in _broken(tmp_path)[2]


def test_an_edited_last_line_is_named(tmp_path: Path) -> None:
    _three_days(tmp_path)
    _edit(tmp_path / "2026-03-03.jsonl", 9, b"day 2 line 10", b"day 2 line 11")
    file, line, why = _broken(tmp_path)
    assert (file, line) == ("2026-03-03.jsonl", 10) and "hash mismatch" in why


def test_a_deleted_line_is_named(tmp_path: Path) -> None:
    _three_days(tmp_path)
    path = tmp_path / "2026-03-02.jsonl"
    lines = _lines(path)
    path.write_bytes(b"".join(lines[:2] + lines[3:]))
    file, line, why = _broken(tmp_path)
    assert (file, line) == ("2026-03-02.jsonl", 3) and "seq gap" in why and "seq 14 follows 12" in why


def test_reordered_lines_are_named(tmp_path: Path) -> None:
    _three_days(tmp_path)
    path = tmp_path / "2026-03-01.jsonl"
    lines = _lines(path)
    lines[4], lines[5] = lines[5], lines[4]
    path.write_bytes(b"".join(lines))
    file, line, why = _broken(tmp_path)
    assert (file, line) == ("2026-03-01.jsonl", 5) and "seq gap" in why


def test_an_inserted_line_is_named(tmp_path: Path) -> None:
    _three_days(tmp_path)
    path = tmp_path / "2026-03-02.jsonl"
    lines = _lines(path)
    before = json.loads(lines[3])
    # a careful forger: a well-formed record with the right seq and prev, but nothing after it re-chained
    forged, _ = seal({"time": before["time"], "session": "s0", "kind": "user", "text": "I agreed to the loan"},
                     before["seq"] + 1, before["hash"], None)
    path.write_bytes(b"".join(lines[:4] + [forged] + lines[4:]))
    file, line, why = _broken(tmp_path)
    assert (file, line) == ("2026-03-02.jsonl", 6) and "seq gap" in why


def test_a_deleted_middle_file_is_named(tmp_path: Path) -> None:
    _three_days(tmp_path)
    (tmp_path / "2026-03-02.jsonl").unlink()
    file, line, why = _broken(tmp_path)
    assert (file, line) == ("2026-03-03.jsonl", 1) and "deleted file" in why


def test_a_deleted_first_file_is_named(tmp_path: Path) -> None:
    _three_days(tmp_path)
    (tmp_path / "2026-03-01.jsonl").unlink()
    file, line, why = _broken(tmp_path)
    assert (file, line) == ("2026-03-02.jsonl", 1) and "missing file" in why


def test_a_truncated_tail_is_caught_by_head(tmp_path: Path) -> None:
    _three_days(tmp_path)
    path = tmp_path / "2026-03-03.jsonl"
    path.write_bytes(b"".join(_lines(path)[:8]))  # the last two records gone: the chain itself still holds
    file, line, why = _broken(tmp_path)
    assert (file, line) == ("2026-03-03.jsonl", 9) and "truncated tail vs HEAD" in why and "seq 30" in why
    # a restarted server goes on from HEAD: the cut stays visible instead of being covered by new records
    AuditLog(tmp_path, now=lambda: DAY1 + dt.timedelta(days=2, hours=1)).write({"kind": "user", "text": "later"})
    file, line, why = _broken(tmp_path)
    assert (file, line) == ("2026-03-03.jsonl", 9) and "seq 31 follows 28" in why


def test_a_deleted_newest_file_is_caught_by_head(tmp_path: Path) -> None:
    _three_days(tmp_path)
    (tmp_path / "2026-03-03.jsonl").unlink()
    file, line, why = _broken(tmp_path)
    assert (file, line) == ("2026-03-02.jsonl", 11) and "truncated tail" in why


def test_bad_json_is_named(tmp_path: Path) -> None:
    _three_days(tmp_path)
    _edit(tmp_path / "2026-03-01.jsonl", 6, b'"kind": "user"', b'"kind": user')
    file, line, why = _broken(tmp_path)
    assert (file, line) == ("2026-03-01.jsonl", 7) and "bad JSON" in why


def test_an_unchained_line_is_named(tmp_path: Path) -> None:
    _three_days(tmp_path)
    path = tmp_path / "2026-03-02.jsonl"
    lines = _lines(path)
    path.write_bytes(b"".join(lines[:7] + [b'{"session": "s0", "kind": "user", "text": "added"}\n'] + lines[7:]))
    file, line, why = _broken(tmp_path)
    assert (file, line) == ("2026-03-02.jsonl", 8) and "not chained" in why


# --- retention ----------------------------------------------------------------------------------------------


def test_retention_deletes_old_files_on_record_and_verify_still_passes(tmp_path: Path) -> None:
    clock = Clock(DAY1)
    log = AuditLog(tmp_path, AuditSettings(retention_days=2), now=clock)
    for _day in range(5):  # 2026-03-01 .. 03-05
        for i in range(3):
            log.write({"session": "s", "kind": "user", "text": str(i)})
        clock.jump(days=1)
    names = sorted(p.name for p in tmp_path.glob("*.jsonl"))
    assert names == ["2026-03-03.jsonl", "2026-03-04.jsonl", "2026-03-05.jsonl"]
    retention = [r for r in log.read() if r["kind"] == "retention"]
    assert [r["deleted"] for r in retention] == [["2026-03-01.jsonl"], ["2026-03-02.jsonl"]]
    result = verify(tmp_path)
    assert result.ok and result.records == 3 * 3 + 2, result.summary()
    first = log.read()[0]
    assert first["prev"] == retention[-1]["last_hash"] and first["seq"] == retention[-1]["last_seq"] + 1
    # a file deleted by anyone else is still found
    (tmp_path / "2026-03-03.jsonl").unlink()
    file, line, why = _broken(tmp_path)
    assert (file, line) == ("2026-03-04.jsonl", 1) and "missing file" in why


def test_retention_on_an_idle_log_once_a_day(tmp_path: Path) -> None:
    _three_days(tmp_path)
    clock = Clock(DAY1 + dt.timedelta(days=2, hours=1))
    log = AuditLog(tmp_path, AuditSettings(retention_days=1), now=clock)
    assert log.apply_retention(daily=True) == ["2026-03-01.jsonl"]
    assert log.apply_retention(daily=True) == []  # today's pass has run
    clock.jump(days=1)  # 03-04, no record written meanwhile: 03-02 has expired
    assert log.apply_retention(daily=True) == ["2026-03-02.jsonl"]
    # the retention records went to the day they ran
    assert sorted(p.name for p in tmp_path.glob("*.jsonl")) == ["2026-03-03.jsonl", "2026-03-04.jsonl"]
    assert verify(tmp_path).ok


def test_retention_days_must_be_positive_and_a_key_long() -> None:
    with pytest.raises(ConfigError, match="audit.retention_days"):
        load_settings(audit={"retention_days": 0})
    with pytest.raises(ConfigError, match="audit.signing_key .*16 characters"):
        load_settings(audit={"signing_key": "short"})


# --- signing ------------------------------------------------------------------------------------------------


def _recompute(folder: Path, key: bytes | None) -> None:
    """What a forger with write access does: change a record, then re-chain every line (and HEAD)."""
    prev, seq, last_name = GENESIS, 0, ""
    for path in sorted(folder.glob("*.jsonl")):
        out = []
        for raw in _lines(path):
            rec = json.loads(raw)
            for field in ("seq", "prev", "hash"):
                del rec[field]
            rec["text"] = rec["text"].replace("line 1", "line one")
            seq += 1
            line, prev = seal(rec, seq, prev, key)
            out.append(line)
        path.write_bytes(b"".join(out))
        last_name = path.name
    (folder / "HEAD").write_text(json.dumps({"seq": seq, "hash": prev, "file": last_name}) + "\n")


def test_a_signed_chain_recomputed_without_the_key_fails(tmp_path: Path) -> None:
    key = "s3cret-kept-in-the-environment"
    clock = Clock(DAY1)
    log = AuditLog(tmp_path, AuditSettings(signing_key=SecretStr(key)), now=clock)
    for i in range(5):
        log.write({"session": "s", "kind": "user", "text": f"line {i + 1}"})
    assert verify(tmp_path, key.encode()).ok
    assert "signing_key" in _broken(tmp_path)[2]  # without the key a signed log does not verify
    _recompute(tmp_path, None)
    assert verify(tmp_path).ok  # what a plain chain cannot see ...
    file, line, why = _broken(tmp_path, key.encode())  # ... and a key can
    assert (file, line) == ("2026-03-01.jsonl", 1) and "plain SHA-256" in why
    _recompute(tmp_path, b"a guessed key")
    assert "hash mismatch" in _broken(tmp_path, key.encode())[2]


# --- the command line ---------------------------------------------------------------------------------------


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)  # no developer .env or fay.yaml
    monkeypatch.setenv("FAY_CONFIG", str(tmp_path / "none.yaml"))
    monkeypatch.setenv("FAY_DATA_DIR", str(tmp_path / "data"))
    return CliRunner()


def test_cli_verify_ok_and_broken(tmp_path: Path, runner: CliRunner) -> None:
    folder = tmp_path / "data" / "audit"
    _three_days(folder)
    ok = runner.invoke(audit, ["verify"])  # the default folder: <data_dir>/audit
    assert ok.exit_code == 0 and ok.output.startswith("ok: 3 files, 30 records"), ok.output
    _edit(folder / "2026-03-02.jsonl", 4, b"day 1 line 5", b"day 1 line 6")
    broken = runner.invoke(audit, ["verify", str(folder)])
    assert broken.exit_code == 1
    assert f"{folder / '2026-03-02.jsonl'}:5: hash mismatch" in broken.output, broken.output


def test_cli_verify_with_the_key_from_the_settings(tmp_path: Path, runner: CliRunner,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "data" / "audit"
    key = "0123456789abcdef-k"
    AuditLog(folder, AuditSettings(signing_key=SecretStr(key))).write({"kind": "user", "text": "hi"})
    assert runner.invoke(audit, ["verify"]).exit_code == 1
    monkeypatch.setenv("FAY_AUDIT__SIGNING_KEY", key)
    assert runner.invoke(audit, ["verify"]).exit_code == 0


def test_cli_export_jsonl_and_csv(tmp_path: Path, runner: CliRunner) -> None:
    folder = tmp_path / "data" / "audit"
    log = _three_days(folder, per_day=4)
    log.write({"session": "s1", "kind": "answer", "text": "您好 \ud800", "citations": [{"source": "faq.md"}],
               "interrupted": False, "tenant": "acme", "channel": "kiosk"})
    jsonl = runner.invoke(audit, ["export", "--session", "s1", "--format", "jsonl"])
    assert jsonl.exit_code == 0, jsonl.output
    want = [raw for p in sorted(folder.glob("*.jsonl")) for raw in p.read_bytes().splitlines()
            if json.loads(raw).get("session") == "s1"]
    assert jsonl.stdout_bytes.splitlines() == want and len(want) == 7  # the exact lines: hashes still check
    out = tmp_path / "s1.csv"
    assert runner.invoke(audit, ["export", "--session", "s1", "--format", "csv", "--out", str(out)]).exit_code == 0
    rows = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8"), newline="")))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 8
    last = dict(zip(rows[0], rows[-1], strict=True))
    assert last["text"] == "您好 \\ud800" and json.loads(last["citations"]) == [{"source": "faq.md"}]
    assert last["interrupted"] == "false" and last["tenant"] == "acme" and last["turn"] == ""
    assert json.loads(last["other"]) == {"channel": "kiosk"}  # fields without a column of their own
    assert [r[CSV_COLUMNS.index("session")] for r in rows[1:]] == ["s1"] * 7
    none = runner.invoke(audit, ["export", "--session", "nobody"])
    assert none.exit_code == 0 and none.stdout_bytes == b""


# --- a real server, killed mid-answer -----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(tmp_path: Path, fake: FakeLLM) -> dict[str, str]:
    return fay_env(tmp_path, FAY_DEFAULT_PERSONA="interviewer_en", FAY_LLM__MODEL=fake.model,
                   FAY_LLM__API_BASE=fake.url, FAY_LLM__FIRST_TOKEN_TIMEOUT_S="60",
                   FAY_AUDIT__SIGNING_KEY="server-key-0123456789")


def test_fay_run_killed_mid_answer_leaves_a_verifiable_log_with_the_words(tmp_path: Path, seeded_data: Path) -> None:
    fake = FakeLLM(first_token_delay=8)  # the answer is in progress when the server dies
    with fake.in_thread():
        env = _env(tmp_path, fake)
        proc, base = start_fay_run(tmp_path, env=env)
        sock = None
        try:
            with urllib.request.urlopen(urllib.request.Request(f"{base}/api/sessions", data=b"{}"), timeout=30) as r:
                sid = json.load(r)["session_id"]
            folder, words = tmp_path / "data" / "audit", "请记录：我要投诉 complaint"
            body = json.dumps({"text": words}).encode()
            sock = socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])), timeout=20)
            sock.sendall(f"POST /api/sessions/{sid}/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                         f"\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
            deadline = time.monotonic() + 30
            while not any(words in p.read_text(encoding="utf-8") for p in folder.glob("*.jsonl")):
                assert time.monotonic() < deadline, "the user's words were not recorded in 30 s"
                time.sleep(0.05)
            for _ in range(200):  # on record before the answer starts; give it a moment to reach the model
                if fake.requests:
                    break
                time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
            proc.wait(15)
        finally:
            if sock is not None:
                sock.close()
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
    run = subprocess.run([sys.executable, "-m", "fay_core", "audit", "verify", str(folder)], env=env,
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("ok: 1 files,"), run.stdout
    records = AuditLog(folder).read(sid)
    assert [r["text"] for r in records if r["kind"] == "user"] == [words]
    assert not [r for r in records if r["kind"] == "answer"]  # killed mid-answer
    assert verify(folder, b"server-key-0123456789").ok
    assert not verify(folder).ok  # it was signed with the server's key
