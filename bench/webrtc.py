"""WebRTC benchmark: N concurrent aiortc client peers talking to one ``fay run`` server over loopback.

The server runs as its own process (``python -m fay_core run``, the real command) with ICE restricted to
127.0.0.1, the shipped personas and their shipped knowledge (``bank_teller_en``, the default, or ``bank_teller_zh``
with ``--language zh``: offline, they answer from their knowledge with the figures in it), and the real voice
pipeline (Silero VAD, faster-whisper, the persona's offline voice, playout clock). The clients run in this process.
For each session count N:

- **set-up**: offer posted -> the server's ``ready`` message on the data channel (ICE + DTLS + SCTP included);
- **latency**: end of the spoken question (last speech sample sent by the client's microphone track) -> first
  audible frame of the answer decoded at the client. It includes the VAD's end-of-speech wait, ASR, the answer,
  TTS's first chunk, the playout clock and both network legs. Mode ``text`` sends the question over the data
  channel instead (send -> first audible answer audio), which leaves out VAD and ASR;
- **CPU**: server CPU time per turn, and per connected idle session (Opus encoding of the paced playout, RTP,
  consent checks); **memory**: server RSS growth per connected session;
- the session count at which p95 latency is at least double the single-session p95.

Clients and server share this machine's cores, so client-side Opus/SRTP work competes with the server.
Prints a table and writes ``bench/results/webrtc.json``.

    python bench/webrtc.py [--sessions 1,2,4,8,16] [--rounds 3] [--mode voice|text] [--language en|zh]
"""

from __future__ import annotations

import argparse
import asyncio
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
import wave
from pathlib import Path
from typing import Any

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fay_core.settings import WebRTCSettings  # noqa: E402
from fay_core.transport.client import FayClient  # noqa: E402
from serve import fay_env, start_fay  # noqa: E402 (bench/serve.py)

RESULTS = ROOT / "bench" / "results"
#: per language: the shipped persona asked, a customer's question its knowledge answers, and the voice that asks it
#: (English: the persona's own, Piper; Mandarin: kokoro, which speaks a sentence in one breath, where the persona's
#: recorded syllables leave gaps between words that end a turn early)
QUESTIONS = {"en": ("bank_teller_en", "What are your opening hours?", ["--persona", "bank_teller_en"]),
             "zh": ("bank_teller_zh", "请问你们几点开门？", ["--engine", "kokoro"])}
LOOPBACK = WebRTCSettings(host_addresses=["127.0.0.1"], remote_networks=["127.0.0.0/8"])


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def question_pcm(work: Path, question: str, voice: list[str]) -> tuple[bytes, int]:
    """The question spoken by ``fay tts`` with an offline neural voice (natural enough for the turn model, which
    takes espeak-ng's robot voice for an unfinished sentence), trailing silence trimmed (so 'end of speech' is the
    last word)."""
    wav = work / "question.wav"
    subprocess.run([sys.executable, "-m", "fay_core", "tts", question, *voice, "--out", str(wav)],
                   check=True, timeout=300, cwd=ROOT, stdout=subprocess.DEVNULL,
                   env={**os.environ, "FAY_VOICE__TTS__ONLINE": "never"})
    with wave.open(str(wav)) as w:
        rate, pcm = w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), np.int16)
    loud = np.flatnonzero(np.abs(pcm) > 500)
    return pcm[: loud[-1] + 1].tobytes(), rate


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_server(work: Path, port: int, max_sessions: int) -> asyncio.subprocess.Process:
    """``fay run`` with the shipped personas (and their knowledge, ingested at this first start) on embedded
    defaults, offline voices only."""
    env = fay_env(work, max_sessions, FAY_VOICE__TTS__ONLINE="never")
    try:
        return await start_fay(work, port, env, timeout_s=300)
    except RuntimeError as exc:
        sys.exit(str(exc))


ANSWERS: list[str] = []  # the first answer heard, printed beside the figures (what was measured)
STAGES = ("vad_end", "asr_final", "tts_first_audio", "first_audio_out")


async def one_turn(c: FayClient, mode: str, question: str, pcm: bytes, rate: int, timeout_s: float,
                   ) -> dict[str, float] | None:
    """One question: ms from its end to the first audible answer frame, the server's stage marks (ms since the end
    of speech it heard) and the downlink (playout released the first frame -> audible at the client); None: no
    answer audio in time."""
    c.messages.clear()
    c.expect_audio()
    if c.pc is None or c.pc.connectionState != "connected":
        return None
    if mode == "voice":
        duration = c.say(pcm, rate)
        assert c.mic is not None
        try:
            await asyncio.wait_for(c.mic.speech_ended.wait(), duration + 10)
        except TimeoutError:  # the microphone track stopped: the connection is gone
            return None
        end = c.mic.speech_ended_at
        assert end is not None
    else:
        end = time.monotonic()
        c.send_text(question)
    try:
        await asyncio.wait_for(c.audible.wait(), timeout_s)
    except TimeoutError:
        return None
    assert c.first_audible_at is not None
    out = {"latency": (c.first_audible_at - end) * 1000}
    speaking = [m for m in c.messages if m["type"] == "state" and m["state"] == "speaking"]
    if speaking:
        out["downlink"] = (c.first_audible_at - speaking[0]["ts"]) * 1000
    for m in c.messages:
        if m["type"] == "latency" and m["stage"] in STAGES:
            out.setdefault(m["stage"], m["ms"])
    # let the answer play out before the next question (no barge-in on our own answer)
    try:
        await c.wait_for("state", 30, state="listening")
    except TimeoutError:
        out["stuck"] = 1.0
    out["errors"] = float(sum(m["type"] == "error" for m in c.messages))
    answers = [m for m in c.messages if m["type"] == "answer"]
    out["cited"] = float(bool(answers and answers[-1].get("citations")))  # answered from the knowledge
    if answers and not ANSWERS:
        ANSWERS.append(str(answers[-1].get("text", "")))
    await asyncio.sleep(0.5)
    return out


async def run_level(url: str, server: psutil.Process, n: int, rounds: int, mode: str, persona: str, question: str,
                    pcm: bytes, rate: int) -> dict[str, Any]:
    rss0 = server.memory_info().rss
    clients = [FayClient(url, persona=persona, ice=LOOPBACK, audible_rms=500.0) for _ in range(n)]
    setups: list[float] = []

    async def connect(c: FayClient) -> None:
        await c.connect()
        setups.append(c.connect_s)

    await asyncio.gather(*(connect(c) for c in clients))
    try:
        await asyncio.sleep(2.0)  # let set-up CPU settle
        idle_cpu0 = sum(server.cpu_times()[:2])
        await asyncio.sleep(3.0)
        idle_cpu = (sum(server.cpu_times()[:2]) - idle_cpu0) / 3.0
        rss = server.memory_info().rss
        turns_out: list[dict[str, float]] = []
        missed = 0
        cpu0 = sum(server.cpu_times()[:2])
        t0 = time.monotonic()

        async def talk(c: FayClient) -> None:
            nonlocal missed
            await asyncio.sleep(random.uniform(0, 1.0))  # not in lockstep
            for _ in range(rounds):
                got = await one_turn(c, mode, question, pcm, rate, timeout_s=30.0)
                if got is None:
                    missed += 1
                else:
                    turns_out.append(got)

        await asyncio.gather(*(talk(c) for c in clients))
        wall = time.monotonic() - t0
        busy_cpu = sum(server.cpu_times()[:2]) - cpu0
        turns = n * rounds
        # CPU of the turns themselves: busy time minus what the idle sessions would have used meanwhile
        turn_cpu_ms = max(0.0, busy_cpu - idle_cpu * wall) / max(1, turns) * 1000
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    latencies = [t["latency"] for t in turns_out]
    downlink = [t["downlink"] for t in turns_out if "downlink" in t]
    stages = {f"{s}_ms_p50": pct([t[s] for t in turns_out if s in t], 0.5) for s in STAGES}
    return {
        "sessions": n,
        "turns": turns,
        "missed": missed,
        "not_back_to_listening": sum(1 for t in turns_out if "stuck" in t),
        "error_events": int(sum(t["errors"] for t in turns_out)),
        "answered_with_a_source": int(sum(t["cited"] for t in turns_out)),
        "setup_ms_p50": statistics.median(setups) * 1000,
        "setup_ms_p95": pct(setups, 0.95) * 1000,
        "latency_ms_p50": pct(latencies, 0.5),
        "latency_ms_p95": pct(latencies, 0.95),
        "latency_ms_max": max(latencies) if latencies else float("nan"),
        "downlink_ms_p50": pct(downlink, 0.5),
        "downlink_ms_p95": pct(downlink, 0.95),
        **stages,
        "idle_cpu_pct_per_session": idle_cpu / n * 100,
        "cpu_ms_per_turn": turn_cpu_ms,
        "rss_mib_per_session": (rss - rss0) / n / 2**20,
        "server_rss_mib": rss / 2**20,
    }


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", default="1,2,4,8,16", help="comma-separated session counts to try, in order")
    ap.add_argument("--rounds", type=int, default=3, help="questions per session at each level")
    ap.add_argument("--mode", choices=["voice", "text"], default="voice")
    ap.add_argument("--keep-going", action="store_true", help="do not stop once p95 has doubled")
    ap.add_argument("--language", choices=sorted(QUESTIONS), default="en",
                    help="en: the default persona bank_teller_en; zh: bank_teller_zh")
    args = ap.parse_args()
    levels = [int(x) for x in args.sessions.split(",")]
    persona, question, voice = QUESTIONS[args.language]

    work = Path(tempfile.mkdtemp(prefix="fay-bench-webrtc-"))
    pcm, rate = question_pcm(work, question, voice)
    port = free_port()
    proc = await start_server(work, port, max(levels) + 2)
    server = psutil.Process(proc.pid)
    url = f"http://127.0.0.1:{port}/"
    rows: list[dict[str, Any]] = []
    doubled_at: int | None = None
    try:
        print("warming up (models load on first use)...", file=sys.stderr)
        await run_level(url, server, 1, 2, args.mode, persona, question, pcm, rate)
        print(f"  {persona} answers {question!r} with: {ANSWERS[0] if ANSWERS else '(nothing)'}", file=sys.stderr)
        for n in levels:
            row = await run_level(url, server, n, args.rounds, args.mode, persona, question, pcm, rate)
            rows.append(row)
            print(f"  {n:3d} sessions: p50 {row['latency_ms_p50']:.0f} ms, p95 {row['latency_ms_p95']:.0f} ms, "
                  f"missed {row['missed']}, answered with a source {row['answered_with_a_source']}/{row['turns']}",
                  file=sys.stderr)
            if row["latency_ms_p95"] >= 2 * rows[0]["latency_ms_p95"] and doubled_at is None:
                doubled_at = n
                if not args.keep_going:
                    break
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    print(f"\nWebRTC, {persona}, mode {args.mode}: end of {'speech' if args.mode == 'voice' else 'question'} -> first "
          f"audible answer frame at the client ({os.cpu_count()} cores, {platform.python_version()})")
    header = (f"{'sessions':>8} {'setup p50':>10} {'setup p95':>10} {'lat p50':>8} {'lat p95':>8} {'lat max':>8} "
              f"{'missed':>6} {'idle %core/s':>12} {'cpu ms/turn':>11} {'MiB/sess':>8}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['sessions']:>8} {r['setup_ms_p50']:>10.0f} {r['setup_ms_p95']:>10.0f} {r['latency_ms_p50']:>8.0f} "
              f"{r['latency_ms_p95']:>8.0f} {r['latency_ms_max']:>8.0f} {r['missed']:>6} "
              f"{r['idle_cpu_pct_per_session']:>12.1f} {r['cpu_ms_per_turn']:>11.0f} {r['rss_mib_per_session']:>8.1f}")
    print(f"p95 doubled (vs 1 session) at: {doubled_at if doubled_at else 'not within ' + args.sessions} sessions")
    print("\nwhere the time goes (p50, ms): server stages since the end of speech it heard (text mode: since the "
          "question arrived); downlink = playout released the first answer frame -> audible at the client (an "
          "aiortc client prefetches 4 packets, 80 ms, before it decodes)")
    print(f"{'sessions':>8} " + " ".join(f"{s:>15}" for s in STAGES) + f" {'downlink p50':>12} {'downlink p95':>12}")
    for r in rows:
        print(f"{r['sessions']:>8} " + " ".join(f"{r[s + '_ms_p50']:>15.0f}" for s in STAGES)
              + f" {r['downlink_ms_p50']:>12.0f} {r['downlink_ms_p95']:>12.0f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = ("" if args.mode == "voice" else f"_{args.mode}") + ("" if args.language == "en" else f"_{args.language}")
    out = RESULTS / f"webrtc{suffix}.json"
    out.write_text(json.dumps({
        "persona": persona, "question": question, "answer": ANSWERS[0] if ANSWERS else None,
        "mode": args.mode, "rounds": args.rounds, "cores": os.cpu_count(), "python": platform.python_version(),
        "levels": rows, "p95_doubled_at_sessions": doubled_at,
    }, indent=2))
    print(f"wrote {out}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
