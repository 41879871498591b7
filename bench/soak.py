"""Soak: many text and voice sessions against one ``fay run`` for minutes; do turns get lost, does the server grow?

The server runs as its own process (``python -m fay_core run``, the real command, ICE restricted to 127.0.0.1) with
the shipped personas ``bank_teller_en`` and ``bank_teller_zh`` answering from their knowledge (offline answerer,
or ``--llm fake``: the LLM path through litellm to :class:`fay_core.testing.FakeLLM` in this process). Clients run
in this process, for ``--minutes``:

- **text** sessions: ``POST /api/sessions``, then questions worded as customers word them (English and Chinese)
  streamed from ``POST /api/sessions/{id}/messages``; each session is closed (``DELETE``) and a new one opened
  after ``--turns-per-session`` questions, so session set-up and teardown are soaked too. Latency: question
  posted -> ``answer`` event; an offline answer must contain the figure the knowledge gives (else: ``wrong``);
- **voice** sessions: :class:`~fay_core.transport.client.FayClient` peers speaking bank questions (made at the
  start by ``fay tts`` with offline neural voices: :data:`SPOKEN`) into the microphone track, reconnecting after
  ``--turns-per-session`` turns. Latency: end of the speech sent -> the ``answer`` message on the data channel;
  an offline answer must contain the question's figure (else: ``wrong``, with what the server heard);
- a turn is **lost** when no finished answer arrives within ``--lost-after-s`` (a refused message and a dropped
  stream count as lost too, with their error); a session the server **refuses** to start with 503 or 429 and
  ``Retry-After`` (busy: ``server.max_loop_lag_ms``; full; too many offers from one address still connecting) is
  no turn: it is counted apart, and the client waits as told and tries again;
- the server's RSS, open file descriptors, threads and CPU are read from ``/proc/<pid>`` every ``--sample-s``.
  Fay has no metric for its asyncio task count, and none is added for this bench: a leak of tasks shows as RSS
  growth, a leak of connections or peers as descriptors and threads;
- **flat**: each resource's median over the last fifth of the run after warm-up (``--warmup-s``, default the
  first minute) compared with its median over the first fifth; flat within ``--flat-pct`` (5 %).

Prints a table and writes ``bench/results/soak.json``, a chart ``soak.svg`` (drawn here: matplotlib is not a
dependency of Fay) and the server's log ``soak.log``.

    python bench/soak.py [--minutes 10] [--text-sessions 100] [--voice-sessions 10] [--llm offline|fake]
                         [--set FAY_SERVER__MAX_LOOP_LAG_MS=100 ...]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fay_core.settings import WebRTCSettings  # noqa: E402
from fay_core.testing import FakeLLM  # noqa: E402
from fay_core.transport.client import FayClient, OfferRefused  # noqa: E402
from fay_core.voice.audio import load_audio  # noqa: E402
from serve import fay_env, start_fay  # noqa: E402 (bench/serve.py)

RESULTS = ROOT / "bench" / "results"
LOOPBACK = WebRTCSettings(host_addresses=["127.0.0.1"], remote_networks=["127.0.0.0/8"])
RESOURCES = ("rss_mib", "fds", "threads")
PERSONAS = {"en": "bank_teller_en", "zh": "bank_teller_zh"}
WARM_UP_S = 180.0  # bound of a warm-up turn

# (persona, question as a customer asks it, what the knowledge's answer must contain)
QUESTIONS: list[tuple[str, str, str]] = [
    ("bank_teller_en", "hi, are you open on saturdays?", "13:00"),
    ("bank_teller_en", "I can't find my debit card anywhere, what do I do?", "400-800-1234"),
    ("bank_teller_en", "how much cash can I take out per day at the atm", "20,000"),
    ("bank_teller_en", "Do you charge for sending money?", "free"),
    ("bank_teller_en", "what's the interest on the harbor saver?", "2.10%"),
    ("bank_teller_en", "what happens if I break a term deposit early", "0.25%"),
    ("bank_teller_zh", "请问你们周六营业吗？", "13:00"),
    ("bank_teller_zh", "我的银行卡找不到了，怎么办", "400-800-1234"),
    ("bank_teller_zh", "ATM一天最多能取多少钱", "20,000"),
    ("bank_teller_zh", "转到别的银行要多久？", "2小时"),
    ("bank_teller_zh", "一年定期利息多少", "2.60%"),
]
#: (persona, question as a customer says it, what the knowledge's answer must contain, the voice that says it):
#: spoken by ``fay tts`` with offline neural voices (English: the persona's own, Piper; Mandarin: kokoro, which
#: speaks a sentence in one breath), so every voice turn is a real knowledge answer, figures and all
SPOKEN: list[tuple[str, str, str, list[str]]] = [
    ("bank_teller_en", "What are your opening hours?", "13:00", ["--persona", "bank_teller_en"]),
    ("bank_teller_en", "How much cash can I take out per day at the ATM?", "20,000", ["--persona", "bank_teller_en"]),
    ("bank_teller_en", "What's the interest rate on the Harbor Saver?", "2.10%", ["--persona", "bank_teller_en"]),
    ("bank_teller_zh", "请问你们几点开门？", "9:00", ["--engine", "kokoro"]),
    ("bank_teller_zh", "一年定期利息多少？", "2.60%", ["--engine", "kokoro"]),
    ("bank_teller_zh", "我的银行卡丢了怎么办？", "400-800-1234", ["--engine", "kokoro"]),
]


@dataclass(frozen=True)
class Spoken:
    """A spoken question: its persona, the 16 kHz PCM and the figure its answer must contain."""

    persona: str
    pcm: bytes
    expected: str


def spoken_questions(work: Path, languages: list[str]) -> list[Spoken]:
    """Each question of :data:`SPOKEN` for ``languages``, spoken by ``fay tts`` (the product's own command) and
    resampled to 16 kHz, trailing silence trimmed (so 'end of speech' is the last word)."""
    out = []
    wanted = {PERSONAS[lang] for lang in languages}
    for i, (persona, question, expected, voice) in enumerate(SPOKEN):
        if persona not in wanted:
            continue
        wav = work / f"question-{i}.wav"
        subprocess.run([sys.executable, "-m", "fay_core", "tts", question, *voice, "--out", str(wav)],
                       check=True, timeout=300, cwd=ROOT, stdout=subprocess.DEVNULL,
                       env={**os.environ, "FAY_VOICE__TTS__ONLINE": "never"})
        pcm = np.frombuffer(load_audio(wav), np.int16)
        loud = np.flatnonzero(np.abs(pcm) > 500)
        out.append(Spoken(persona, pcm[: loud[-1] + 1].tobytes(), expected))
    return out


def personas(args: argparse.Namespace) -> list[str]:
    return [PERSONAS[lang] for lang in args.languages]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Tally:
    """What the clients saw: latencies by kind, answered / lost / wrong turns, errors by source."""

    latency_ms: dict[str, list[tuple[float, float]]] = field(default_factory=lambda: collections.defaultdict(list))
    answered: collections.Counter[str] = field(default_factory=collections.Counter)
    lost: collections.Counter[str] = field(default_factory=collections.Counter)
    wrong: collections.Counter[str] = field(default_factory=collections.Counter)
    refused: collections.Counter[str] = field(default_factory=collections.Counter)  #: session starts, 503
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    answered_at: list[float] = field(default_factory=list)  # monotonic times, for the chart

    def answer(self, kind: str, ms: float) -> None:
        """A finished answer ``ms`` after the question (kept with when it came, to leave out the warm-up)."""
        self.answered[kind] += 1
        self.latency_ms[kind].append((time.monotonic(), ms))
        self.answered_at.append(time.monotonic())

    def latency(self, kind: str, after: float) -> list[float]:
        return [ms for at, ms in self.latency_ms[kind] if at >= after]

    def refuse(self, kind: str, source: str) -> None:
        """The server refused to start a session (503 with ``Retry-After``): no turn was accepted, none lost."""
        self.refused[kind] += 1
        self.errors[source] += 1

    def lose(self, kind: str, source: str) -> None:
        self.lost[kind] += 1
        self.errors[source] += 1


# --- the server -------------------------------------------------------------------------------------------


async def start_server(work: Path, port: int, max_sessions: int, llm: FakeLLM | None,
                       settings: list[str]) -> asyncio.subprocess.Process:
    env = fay_env(work, max_sessions, FAY_VOICE__TTS__ONLINE="never", **dict(s.split("=", 1) for s in settings))
    if llm is not None:
        env.update(FAY_LLM__MODEL=llm.model, FAY_LLM__API_BASE=llm.url, FAY_LLM__API_KEY="sk-fake")
    return await start_fay(work, port, env, timeout_s=90)


async def stop_server(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), 15)
    except TimeoutError:
        proc.kill()
        await proc.wait()


async def stages(base: str) -> dict[str, dict[str, float]]:
    """The server's own latency marks (``fay_stage_seconds`` on ``/metrics``) over the whole run, per stage: count,
    mean and p50/p95 read off the histogram's buckets (the upper bound of the bucket the quantile falls in), in ms.
    Text and voice turns share the stages: a run with one kind of session tells which stage is slow for it."""
    async with aiohttp.ClientSession() as http, http.get(f"{base}/metrics") as r:
        text = await r.text()
    buckets: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "fay_stage_seconds":
            continue
        for sample in family.samples:
            stage = sample.labels.get("stage", "?")
            if sample.name.endswith("_bucket"):
                buckets[stage].append((float(sample.labels["le"]), sample.value))
            elif sample.name.endswith("_sum"):
                sums[stage] = sample.value
    out: dict[str, dict[str, float]] = {}
    for stage, bs in buckets.items():
        bs.sort()
        count = bs[-1][1]
        if not count:
            continue

        def quantile(q: float, bs: list[tuple[float, float]] = bs, count: float = count) -> float:
            return next(le for le, n in bs if n >= q * count) * 1000

        out[stage] = {"count": count, "mean_ms": round(sums.get(stage, 0.0) / count * 1000, 1),
                      "p50_ms": quantile(0.5), "p95_ms": quantile(0.95)}
    return out


def server_errors(log: Path) -> collections.Counter[str]:
    """Warnings and errors the server logged, by logger (``server WARNING fay_core.bus``)."""
    out: collections.Counter[str] = collections.Counter()
    for line in log.read_text(errors="replace").splitlines():
        parts = line.split(" ", 4)  # date time LEVEL logger: message
        if len(parts) >= 4 and parts[2] in ("WARNING", "ERROR", "CRITICAL"):
            out[f"server {parts[2]} {parts[3].rstrip(':')}"] += 1
    return out


# --- resources ----------------------------------------------------------------------------------------------


def read_proc(pid: int) -> dict[str, float]:
    """RSS (MiB), open descriptors, threads and CPU seconds of process ``pid``, from ``/proc``."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return {
        "rss_mib": int(status["VmRSS"].split()[0]) / 1024,
        "fds": float(len(os.listdir(f"/proc/{pid}/fd"))),
        "threads": float(status["Threads"]),
        "cpu_s": (int(stat[11]) + int(stat[12])) / ticks,  # utime, stime
    }


async def loop_lag_ms(http: aiohttp.ClientSession, base: str) -> float:
    """The server's own reading of its event loop's lag (``fay_event_loop_lag_seconds``), ms; NaN if unread."""
    try:
        async with http.get(f"{base}/metrics") as r:
            text = await r.text()
    except (aiohttp.ClientError, TimeoutError):
        return float("nan")
    for family in text_string_to_metric_families(text):
        if family.name == "fay_event_loop_lag_seconds":
            return round(family.samples[0].value * 1000, 1)
    return float("nan")


async def sample(pid: int, base: str, every_s: float, t0: float, out: list[dict[str, float]],
                 stop: asyncio.Event) -> None:
    async with aiohttp.ClientSession() as http:
        while not stop.is_set():
            try:
                out.append({"t_s": time.monotonic() - t0, **read_proc(pid),
                            "client_cpu_s": read_proc(os.getpid())["cpu_s"],
                            "loop_lag_ms": await loop_lag_ms(http, base)})
            except (FileNotFoundError, ProcessLookupError):  # the server is gone: the clients will say so
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)


def flatness(samples: list[dict[str, float]], warmup_s: float, tolerance_pct: float) -> dict[str, Any]:
    """Per resource: median of the first and last fifth of the samples after warm-up, growth %, flat or not."""
    after = [s for s in samples if s["t_s"] >= warmup_s]
    if len(after) < 4:
        return {"samples_after_warmup": len(after), "flat": None}
    n = max(2, len(after) // 5)
    out: dict[str, Any] = {"samples_after_warmup": len(after)}
    for key in RESOURCES:
        early, late = statistics.median(s[key] for s in after[:n]), statistics.median(s[key] for s in after[-n:])
        growth = (late - early) / early * 100 if early else 0.0
        out[key] = {"early": round(early, 1), "late": round(late, 1), "growth_pct": round(growth, 2),
                    "max": round(max(s[key] for s in after), 1), "flat": growth <= tolerance_pct}
    out["flat"] = all(out[k]["flat"] for k in RESOURCES)
    return out


# --- the clients ----------------------------------------------------------------------------------------------


async def text_session(http: aiohttp.ClientSession, base: str, n: int, args: argparse.Namespace, until: float,
                       tally: Tally) -> None:
    """One customer typing: a session, questions at a human pace, a new session every few questions."""
    rng = random.Random(n)
    mine_personas = personas(args)
    persona = mine_personas[n % len(mine_personas)]
    mine = [q for q in QUESTIONS if q[0] == persona]
    await asyncio.sleep(rng.uniform(0, args.think_s))  # not in lockstep
    while time.monotonic() < until:
        try:
            async with http.post(f"{base}/api/sessions", json={"persona": persona}) as r:
                if r.status in (429, 503) and "Retry-After" in r.headers:
                    tally.refuse("text", f"http {r.status} create session: {(await r.json()).get('error', '')[:40]}")
                    await asyncio.sleep(float(r.headers["Retry-After"]) * rng.uniform(1, 1.5))
                    continue
                if r.status != 201:
                    tally.lose("text", f"http {r.status} create session")
                    await asyncio.sleep(args.think_s)
                    continue
                sid = (await r.json())["session_id"]
        except (aiohttp.ClientError, TimeoutError) as exc:
            tally.lose("text", f"client {type(exc).__name__} create session")
            await asyncio.sleep(args.think_s)
            continue
        for _ in range(args.turns_per_session):
            if time.monotonic() >= until:
                break
            _, question, expected = rng.choice(mine)
            await text_turn(http, f"{base}/api/sessions/{sid}/messages", question, expected, args, tally)
            await asyncio.sleep(rng.uniform(0.5, 1.5) * args.think_s)
        try:
            async with http.delete(f"{base}/api/sessions/{sid}") as r:
                if r.status != 200:
                    tally.errors[f"http {r.status} close session"] += 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            tally.errors[f"client {type(exc).__name__} close session"] += 1


async def text_turn(http: aiohttp.ClientSession, url: str, question: str, expected: str, args: argparse.Namespace,
                    tally: Tally) -> None:
    started = time.monotonic()
    answer: dict[str, Any] | None = None
    try:
        async with asyncio.timeout(args.lost_after_s), http.post(url, json={"text": question}) as r:
            if r.status != 200:
                tally.lose("text", f"http {r.status} message")
                return
            async for raw in r.content:  # server-sent events, one 'data:' line each
                line = raw.decode().strip()
                if not line.startswith("data: "):
                    continue
                msg = json.loads(line[6:])
                if msg["type"] == "error":
                    tally.errors[f"sse error {msg.get('source', '?')}"] += 1
                elif msg["type"] == "answer":
                    answer = msg  # read on to the end of the stream, as a browser does
    except TimeoutError:
        tally.lose("text", "no answer in time (text)")
        return
    except aiohttp.ClientError as exc:
        tally.lose("text", f"client {type(exc).__name__} message")
        return
    if answer is None:
        tally.lose("text", "stream ended without an answer")
        return
    tally.answer("text", (time.monotonic() - started) * 1000)
    if answer.get("error"):
        tally.errors[f"answer error {answer['error'][:60]}"] += 1
    if args.llm == "offline" and expected not in answer.get("text", ""):
        tally.wrong["text"] += 1


async def voice_session(base: str, n: int, speech: list[Spoken], args: argparse.Namespace, until: float,
                        tally: Tally) -> None:
    """One customer at a kiosk: a WebRTC peer speaking bank questions, reconnecting every few turns."""
    rng = random.Random(1000 + n)
    persona = speech[n % len(speech)].persona
    mine = [q for q in speech if q.persona == persona]
    await asyncio.sleep(rng.uniform(0, 3))
    while time.monotonic() < until:
        c = FayClient(base, persona=persona, ice=LOOPBACK, audible_rms=500.0)
        try:
            try:
                await c.connect()
            except OfferRefused as exc:
                if exc.status in (429, 503) and exc.retry_after_s is not None:
                    tally.refuse("voice", f"offer {exc.status}: {exc.error[:40]}")
                    await asyncio.sleep(exc.retry_after_s * rng.uniform(1, 1.5))
                else:
                    tally.lose("voice", f"offer {exc.status} connect")
                    await asyncio.sleep(3)
                continue
            except (ConnectionError, TimeoutError, aiohttp.ClientError) as exc:
                tally.lose("voice", f"client {type(exc).__name__} connect")
                await asyncio.sleep(3)
                continue
            for _ in range(args.turns_per_session):
                if time.monotonic() >= until:
                    break
                if c.pc is None or c.pc.connectionState != "connected":  # lost by the server: connect again
                    tally.errors[f"peer {c.pc.connectionState if c.pc else 'gone'} between turns"] += 1
                    break
                await voice_turn(c, rng.choice(mine), args, tally)
                await asyncio.sleep(rng.uniform(0.5, 1.5) * args.think_s)
        finally:
            await c.close()


async def voice_turn(c: FayClient, question: Spoken, args: argparse.Namespace, tally: Tally) -> None:
    c.messages.clear()
    duration = c.say(question.pcm, 16000)
    assert c.mic is not None
    try:
        await asyncio.wait_for(c.mic.speech_ended.wait(), duration + 10)
    except TimeoutError:
        tally.lose("voice", "microphone track stopped")
        return
    end = c.mic.speech_ended_at
    assert end is not None
    try:
        answer = await c.wait_for("answer", args.lost_after_s)
    except TimeoutError:
        tally.lose("voice", "no answer in time (voice)")
        return
    finally:
        for m in c.messages:
            if m["type"] == "error":
                tally.errors[f"channel error {m.get('source', '?')}"] += 1
    tally.answer("voice", (time.monotonic() - end) * 1000)
    if args.llm == "offline" and question.expected not in answer.get("text", ""):
        tally.wrong["voice"] += 1
        heard = next((m["text"] for m in reversed(c.messages) if m["type"] == "user_text"), "?")
        tally.errors[f"voice: wrong answer, heard {heard!r}"[:90]] += 1
    try:  # let the answer play out: the next question is not a barge-in
        await c.wait_for("state", args.lost_after_s, state="listening")
    except TimeoutError:
        tally.errors["voice: not back to listening"] += 1


async def warm_up(base: str, speech: list[Spoken], args: argparse.Namespace) -> None:
    """One question to each persona in use, by text and by voice, before the clock starts: ingestion and model
    loading are first-use costs, not what a soak measures (the flatness verdict still leaves out ``--warmup-s``)."""
    scratch = Tally()
    args = argparse.Namespace(**{**vars(args), "lost_after_s": WARM_UP_S})  # the first question ingests
    async with aiohttp.ClientSession() as http:
        for persona, question, expected in {q[0]: q for q in QUESTIONS if q[0] in personas(args)}.values():
            if args.text_sessions:
                while True:  # a node still warming up may say it is busy: wait as it says
                    async with http.post(f"{base}/api/sessions", json={"persona": persona}) as r:
                        created = await r.json()
                        if r.status == 503 and "Retry-After" in r.headers:
                            await asyncio.sleep(float(r.headers["Retry-After"]))
                            continue
                        sid = created["session_id"]
                        break
                await text_turn(http, f"{base}/api/sessions/{sid}/messages", question, expected, args, scratch)
                async with http.delete(f"{base}/api/sessions/{sid}"):
                    pass
    for persona in {speech[n % len(speech)].persona for n in range(args.voice_sessions)}:
        while True:
            try:
                async with FayClient(base, persona=persona, ice=LOOPBACK, audible_rms=500.0) as c:
                    await voice_turn(c, next(q for q in speech if q.persona == persona), args, scratch)
                break
            except OfferRefused as exc:
                if exc.status != 503 or exc.retry_after_s is None:
                    raise
                await asyncio.sleep(exc.retry_after_s)
    if scratch.lost:
        raise RuntimeError(f"the warm-up lost turns: {dict(scratch.errors)}")


# --- the chart ----------------------------------------------------------------------------------------------


def svg_chart(samples: list[dict[str, float]], answered: list[float], warmup_s: float, path: Path) -> None:
    """One panel per resource (and answered turns per sample interval) against time; warm-up shaded."""
    panels = [("rss_mib", "RSS (MiB)"), ("fds", "open fds"), ("threads", "threads"), ("turns", "answered turns")]
    w, h, pad, gap = 720, 150, 50, 30
    end = max((s["t_s"] for s in samples), default=1.0) or 1.0
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{len(panels) * (h + gap) + gap}" '
           'font-family="sans-serif" font-size="11">', '<rect width="100%" height="100%" fill="white"/>']
    for i, (key, label) in enumerate(panels):
        top = gap + i * (h + gap)
        if key == "turns":
            pts = [(s["t_s"], float(sum(1 for a in answered if prev["t_s"] <= a < s["t_s"])))
                   for prev, s in zip(samples, samples[1:], strict=False)]
        else:
            pts = [(s["t_s"], s[key]) for s in samples]
        lo, hi = min((v for _, v in pts), default=0.0), max((v for _, v in pts), default=1.0)
        lo, hi = (lo * 0.95, hi * 1.05) if hi > lo else (lo - 1, hi + 1)
        x0, x1 = pad, w - 10
        warm_x = x0 + (x1 - x0) * min(1.0, warmup_s / end)
        out.append(f'<rect x="{x0}" y="{top}" width="{warm_x - x0:.1f}" height="{h}" fill="#eee"/>')
        out.append(f'<rect x="{x0}" y="{top}" width="{x1 - x0}" height="{h}" fill="none" stroke="#999"/>')
        out.append(f'<text x="{x0}" y="{top - 6}">{label} (grey: warm-up)</text>')
        out.append(f'<text x="{x0 - 4}" y="{top + 10}" text-anchor="end">{hi:.0f}</text>')
        out.append(f'<text x="{x0 - 4}" y="{top + h}" text-anchor="end">{lo:.0f}</text>')
        out.append(f'<text x="{x1}" y="{top + h + 12}" text-anchor="end">{end:.0f} s</text>')
        line = " ".join(f"{x0 + (x1 - x0) * t / end:.1f},{top + h - h * (v - lo) / (hi - lo):.1f}" for t, v in pts)
        out.append(f'<polyline points="{line}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>')
    out.append("</svg>")
    path.write_text("\n".join(out))


# --- the run ------------------------------------------------------------------------------------------------


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="fay-bench-soak-"))
    print("speaking the questions (fay tts)...", file=sys.stderr)
    speech = spoken_questions(work, args.languages) if args.voice_sessions else []
    llm = await FakeLLM(first_token_delay=0.2).start() if args.llm == "fake" else None
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    tally = Tally()
    samples: list[dict[str, float]] = []
    stop = asyncio.Event()
    proc: asyncio.subprocess.Process | None = None
    sampler: asyncio.Future[None] | None = None
    try:
        proc = await start_server(work, port, args.text_sessions + args.voice_sessions + 10, llm, args.set)
        print("warming up (knowledge ingestion, models load on first use)...", file=sys.stderr)
        warming = time.monotonic()
        await warm_up(base, speech, args)
        t0 = time.monotonic()
        print(f"warm in {t0 - warming:.0f} s; soaking for {args.minutes:g} min...", file=sys.stderr)
        until = t0 + args.minutes * 60
        sampler = asyncio.ensure_future(sample(proc.pid, base, args.sample_s, t0, samples, stop))
        limits = aiohttp.TCPConnector(limit=args.text_sessions + 10)
        async with aiohttp.ClientSession(connector=limits) as http:
            await asyncio.gather(
                *(text_session(http, base, n, args, until, tally) for n in range(args.text_sessions)),
                *(voice_session(base, n, speech, args, until, tally) for n in range(args.voice_sessions)),
            )
        wall = time.monotonic() - t0
        marks = await stages(base)
    finally:
        stop.set()
        if sampler is not None:
            await sampler
        if proc is not None:
            await stop_server(proc)
        if llm is not None:
            await llm.stop()
    tally.errors.update(server_errors(work / "server.log"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(work / "server.log", args.out.with_suffix(".log"))
    shutil.rmtree(work, ignore_errors=True)
    for a, b in zip(samples, samples[1:], strict=False):  # CPU of the server and of these clients: a starved
        for key in ("cpu", "client_cpu"):  # load generator loses turns of its own
            b[f"{key}_pct"] = round((b[f"{key}_s"] - a[f"{key}_s"]) / (b["t_s"] - a["t_s"]) * 100, 1)
    kinds = ("text", "voice")
    return {
        "minutes": args.minutes, "wall_s": round(wall, 1), "llm": args.llm, "cores": os.cpu_count(),
        "python": platform.python_version(), "text_sessions": args.text_sessions,
        "voice_sessions": args.voice_sessions, "turns_per_session": args.turns_per_session,
        "lost_after_s": args.lost_after_s, "warmup_s": args.warmup_s,
        "turns": {k: {"answered": tally.answered[k], "lost": tally.lost[k], "wrong": tally.wrong[k],
                      "sessions_refused": tally.refused[k],
                      "latency_ms_p50": round(pct(tally.latency(k, t0 + args.warmup_s), 0.5), 1),
                      "latency_ms_p95": round(pct(tally.latency(k, t0 + args.warmup_s), 0.95), 1),
                      "latency_ms_max": round(max(tally.latency(k, t0), default=float("nan")), 1)} for k in kinds},
        "errors": dict(tally.errors.most_common()),
        "stages": marks,
        "flat": flatness(samples, args.warmup_s, args.flat_pct),
        "samples": samples,
        "_answered_at": [a - t0 for a in tally.answered_at],
    }


def report(result: dict[str, Any], flat_pct: float) -> None:
    print(f"\nsoak: {result['text_sessions']} text + {result['voice_sessions']} voice sessions for "
          f"{result['wall_s']:.0f} s, {result['llm']} answerer ({result['cores']} cores, {result['python']})")
    print("latency: question sent -> finished answer; p50/p95 after warm-up, max over the whole run")
    header = (f"{'kind':>6} {'answered':>9} {'lost':>5} {'wrong':>6} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} "
              f"{'sessions refused':>17}")
    print(header)
    print("-" * len(header))
    for kind, t in result["turns"].items():
        print(f"{kind:>6} {t['answered']:>9} {t['lost']:>5} {t['wrong']:>6} {t['latency_ms_p50']:>8.0f} "
              f"{t['latency_ms_p95']:>8.0f} {t['latency_ms_max']:>8.0f} {t['sessions_refused']:>17}")
    flat = result["flat"]
    print(f"\nserver resources after warm-up ({result['warmup_s']:.0f} s excluded, {flat['samples_after_warmup']} "
          "samples): median of the first fifth -> the last fifth")
    for key in RESOURCES:
        if key in flat:
            f = flat[key]
            print(f"  {key:>8}: {f['early']:>8.1f} -> {f['late']:>8.1f} ({f['growth_pct']:+.1f} %, max {f['max']:.1f})"
                  f"  {'flat' if f['flat'] else 'GROWING'}")
    busy = [s for s in result["samples"] if "cpu_pct" in s and s["t_s"] >= result["warmup_s"]]
    if busy:
        print(f"  CPU %, median (100 = one core of {result['cores']}): server "
              f"{statistics.median(s['cpu_pct'] for s in busy):.0f}, clients (this process) "
              f"{statistics.median(s['client_cpu_pct'] for s in busy):.0f}")
        lags = [s["loop_lag_ms"] for s in busy if s.get("loop_lag_ms") == s.get("loop_lag_ms")]  # (not NaN)
        if lags:
            print(f"  event loop lag (the server's p90 over 5 s), ms: median {statistics.median(lags):.0f}, "
                  f"max {max(lags):.0f}")
    verdict = {True: "yes", False: "NO", None: "not enough samples after warm-up"}[flat["flat"]]
    print(f"flat within {flat_pct:g} % after warm-up: {verdict}")
    print("\nthe server's stage marks over the run (ms since each mark's origin; p50/p95 are histogram bucket bounds)")
    for stage, m in sorted(result["stages"].items(), key=lambda kv: kv[1]["mean_ms"]):
        print(f"  {stage:>24}: n {m['count']:>6.0f}  mean {m['mean_ms']:>8.1f}  p50 <= {m['p50_ms']:>6.0f}  "
              f"p95 <= {m['p95_ms']:>6.0f}")
    print("\nerrors by source:" + ("" if result["errors"] else " none"))
    for source, n in result["errors"].items():
        print(f"  {n:>6}  {source}")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--set", action="append", default=[], metavar="FAY_X=V",
                    help="a server setting on top of the defaults, e.g. FAY_SERVER__MAX_LOOP_LAG_MS=100 (repeatable)")
    ap.add_argument("--text-sessions", type=int, default=100)
    ap.add_argument("--voice-sessions", type=int, default=10)
    ap.add_argument("--llm", choices=["offline", "fake"], default="offline",
                    help="offline answerer, or the LLM path to a fake OpenAI-compatible server")
    ap.add_argument("--languages", type=lambda v: v.split(","), default=["en", "zh"],
                    help="comma-separated: en (bank_teller_en), zh (bank_teller_zh)")
    ap.add_argument("--think-s", type=float, default=3.0, help="mean pause between a session's questions")
    ap.add_argument("--turns-per-session", type=int, default=10, help="questions before a session is replaced")
    ap.add_argument("--lost-after-s", type=float, default=30.0, help="a question unanswered this long is lost")
    ap.add_argument("--sample-s", type=float, default=5.0, help="how often the server's /proc is read")
    ap.add_argument("--warmup-s", type=float, default=60.0, help="left out of the flatness verdict")
    ap.add_argument("--flat-pct", type=float, default=5.0, help="growth after warm-up that still counts as flat")
    ap.add_argument("--out", type=Path, default=RESULTS / "soak.json", help="the JSON (the chart goes beside it)")
    return ap


async def main() -> None:
    args = parser().parse_args()
    result = await soak(args)
    report(result, args.flat_pct)
    chart = args.out.with_suffix(".svg")
    svg_chart(result["samples"], result.pop("_answered_at"), args.warmup_s, chart)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print(f"wrote {args.out}, {chart} and the server's log {args.out.with_suffix('.log')}")


if __name__ == "__main__":
    asyncio.run(main())
