"""The command line: `fay chat` piped and `fay run` answering over HTTP, as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

from fay_core.testing import FakeLLM, fay_env, start_fay_run

ROOT = Path(__file__).resolve().parent.parent


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return fay_env(tmp_path, **extra)


def test_chat_reads_piped_questions_one_reply_per_line(tmp_path: Path, seeded_data: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "fay_core", "chat", "--persona", "bank_teller_en"],
        input="What are your opening hours?\n\nI lost my card\nHow do I fly to the moon?\n",
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == 3, lines
    assert "Monday to Friday" in lines[0] and "Freeze the card" in lines[1] and "colleague" in lines[2]


def test_chat_json_prints_the_wire_messages(tmp_path: Path, seeded_data: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "fay_core", "chat", "--persona", "bank_teller_en", "--json"],
        input="What are your opening hours?\n", env=_env(tmp_path), capture_output=True, text=True, timeout=120,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    disclosure, *messages = [json.loads(line) for line in run.stdout.splitlines()]
    assert disclosure["type"] == "disclosure" and "AI assistant" in disclosure["text"]  # first, before anything
    assert {m["type"] for m in messages[:-1]} == {"delta"} and messages[-1]["type"] == "answer"
    answer = messages[-1]
    assert "".join(m["text"] for m in messages[:-1]) == answer["text"] and "Monday to Friday" in answer["text"]
    assert set(answer["citations"][0]) == {"index", "source", "title", "section", "page", "chunk_id", "score"}


def test_chat_through_an_llm_endpoint(tmp_path: Path, seeded_data: Path) -> None:
    fake = FakeLLM()
    with fake.in_thread():
        run = subprocess.run(
            [sys.executable, "-m", "fay_core", "chat", "--persona", "interviewer_en"],
            input="Hello there\n",
            env=_env(tmp_path, FAY_LLM__MODEL=fake.model, FAY_LLM__API_BASE=fake.url),
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "You said: Hello there"
    assert "Morgan" in fake.requests[0]["messages"][0]["content"]


def test_chat_with_an_unknown_persona_fails_clearly(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "fay_core", "chat", "--persona", "nobody"],
        input="hi\n", env=_env(tmp_path), capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert run.returncode == 2 and "unknown persona 'nobody'" in run.stderr


def test_fay_run_answers_a_question_offline(tmp_path: Path, seeded_data: Path) -> None:
    proc, base = start_fay_run(tmp_path)
    try:
        req = urllib.request.Request(f"{base}/api/sessions", data=b"{}", method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            sid = json.load(r)["session_id"]
        body = json.dumps({"text": "How do I open a savings account?"}).encode()
        req = urllib.request.Request(f"{base}/api/sessions/{sid}/messages", data=body, method="POST")
        with urllib.request.urlopen(req, timeout=60) as r:
            stream = r.read().decode()
        assert "event: answer" in stream and "event: done" in stream, stream  # done: deprecated
        assert "photo ID" in stream, stream
    finally:
        proc.terminate()
        proc.wait(30)
    assert proc.returncode in (0, -15)
