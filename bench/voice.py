"""Voice pipeline benchmark: end of speech → first audio out, barge-in stop latency, ASR speed, VAD cost.

Scenarios (all offline, real engines unless said otherwise):

- ``asr``: real-time factor and word error rate of each packaged whisper model on the LibriVox clips (and the
  AISHELL clip for the multilingual model).
- ``vad``: Silero VAD cost per 32 ms model window and per 20 ms microphone frame.
- ``latency``: voice turns fed in real time as 20 ms microphone frames: real Silero VAD, whisper base, litellm to
  the fake LLM streaming its first token after ``--first-token`` seconds, piper TTS, the playout clock.
  Per-stage p50/p95 from the end of speech (the last voiced VAD window).
- ``framework``: the same path with zero-latency engines (instant ASR, answerer and TTS): the framework's own
  share, from the VAD's end-of-speech decision to the audio queued at the playout clock, and to the first frame
  out of the playout clock.
- ``bargein``: the avatar speaks a long answer, a recording is injected over it; stop latency from the true
  speech onset (energy) and from the VAD onset to the moment playout paused, p50/p95, for two ``min_speech_ms``.
- ``concurrency``: N sessions talking at once; the N at which the p95 end-of-speech → first-audio latency
  doubles compared with one session.
- ``turn_taking``: the turn gate (real Silero VAD + Smart Turn, zero-latency ASR/answerer/TTS) against the silence
  rule alone (``voice.turn.engine: none``): on the shared clips with a 500-800 ms silence inserted at one of their
  phrase boundaries (a pause the VAD finds inside the clip), ``false_cutoff_rate`` (the utterance ended at the
  inserted pause); on the clips as they are, ``end_wait_ms`` (true end of speech → the VAD's end of utterance).
- ``bargein.default``: the stop latency with the shipped default persona's ``interruption`` block.
- ``scale``: many listeners per process: N = 1, 10, 50, 100, 200 sessions in one process, each with a live
  microphone (20 ms frames of silence, and every few seconds a 1.5 s utterance), real Silero VAD, zero-latency
  ASR, answerer and TTS, the silence rule (``voice.turn.engine: none``). Per N and per VAD mode (``batched``: one
  model call per round across sessions in a worker thread, ``voice.vad.batch``; ``per_session``: each session's
  own call on the event loop): ``turn_ms`` (from when the silence rule could first end the turn, the speech end
  plus ``min_silence_ms`` rounded up to whole 32 ms windows, to the answer's first audio out) p50/p95, the
  process's CPU (100 = one core) and the event loop thread's share of it, RSS, the load average.
- ``backchannel``: fillers and backchannels (Piper: "Mm-hm.", "Yeah.", "Right.", "Okay.") and a synthetic cough
  over the avatar with the default settings: ``false_cancel_rate`` (share that interrupted the answer).

Prints a table and writes ``bench/results/voice.json``.

    python bench/voice.py [--turns 8] [--first-token 0.2] [--only latency,bargein,turn_taking,backchannel,scale]
    python bench/voice.py --only scale [--scale-sessions 1,10,50,100,200] [--scale-modes batched,per_session]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from fay_core import hookimpl  # noqa: E402
from fay_core.app import Fay  # noqa: E402
from fay_core.engines import AudioChunk, Transcript  # noqa: E402
from fay_core.events import (  # noqa: E402
    AvatarStartedSpeaking,
    AvatarStoppedSpeaking,
    Interrupted,
    PlayoutPaused,
    UserStartedSpeaking,
)
from fay_core.persona import InterruptionConfig, VoiceConfig, load_persona  # noqa: E402
from fay_core.plugins import Plugins  # noqa: E402
from fay_core.events import UserStoppedSpeaking  # noqa: E402
from fay_core.voice.audio import resample  # noqa: E402
from fay_core.voice.vad import Segmenter, SegmenterConfig, SpeechPaused  # noqa: E402
from fay_core.settings import LLMSettings  # noqa: E402
from fay_core.testing import FakeLLM, Reply, test_settings  # noqa: E402
from fay_whisper import WhisperASR, WhisperSettings  # noqa: E402
from fay_core.voice.audio import load_audio, silence, stream_pcm  # noqa: E402
from fay_core.voice.metrics import word_error_rate  # noqa: E402
from fay_silero import SileroVAD  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results"
STAGES = ["vad_end", "asr_final", "llm_first_token", "first_sentence", "tts_first_audio", "first_audio_out"]
SHORT_ANSWER = "Sure. Our branches open at nine in the morning."
LONG_ANSWER = (
    "We have three kinds of savings accounts. The easy saver pays a variable rate and lets you withdraw at any "
    "time. The fixed saver locks your money for a year at a fixed rate. The young saver is for customers under "
    "eighteen, and it comes with a free debit card."
)


PERSONA = """
name: Vera
language: en
voice: {engine: piper}
system_prompt: You are Vera, a bank teller. Answer briefly.
interruption: {min_speech_ms: 250, false_interruption_ms: 800}
"""


def bench_settings(folder: Path, **overrides: Any) -> Any:
    """Isolated settings with one persona without a knowledge base (the voice path is measured, not RAG)."""
    personas = folder / "personas"
    personas.mkdir(parents=True, exist_ok=True)
    (personas / "vera.yaml").write_text(PERSONA, encoding="utf-8")
    return test_settings(folder, personas_dir=personas, default_persona="vera", **overrides)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    return round(v[min(len(v) - 1, int(q * len(v)))], 2)


def stats(values: list[float]) -> dict[str, float]:
    return {"p50": pct(values, 0.5), "p95": pct(values, 0.95), "n": len(values)}


def clips() -> list[tuple[str, bytes]]:
    names = ["0880", "0930", "0890", "0920"]
    out = [(n, load_audio(DATA / "speech_en" / f"sense_and_sensibility_01_austen_64kb-{n}.wav")) for n in names]
    out.append(("english", load_audio(DATA / "speech_en" / "english.wav")))
    return out


def speech_onset(pcm: bytes, db: float = -15.0) -> float:
    """Seconds into ``pcm`` where speech starts by energy (first 60 ms louder than ``db`` below the peak)."""
    x = np.frombuffer(pcm, dtype=np.int16).astype(np.float64)
    rms = np.sqrt((x[: len(x) // 320 * 320].reshape(-1, 320) ** 2).mean(axis=1))
    loud = 20 * np.log10(rms / rms.max() + 1e-9) > db
    return next(i for i in range(len(loud) - 2) if loud[i : i + 3].all()) * 0.02


# --- zero-latency engines ---------------------------------------------------------------------------------


class ZeroASR:
    name = "zero"

    async def transcribe(self, pcm: bytes, sample_rate: int, *, language: str | None = None) -> Transcript:
        return Transcript("what time do you open", "en", 1.0)


class ZeroTTS:
    name = "zero"
    pcm = (np.sin(np.arange(4800) / 10) * 8000).astype(np.int16).tobytes()  # 200 ms at 24 kHz

    async def synthesize(self, text: str, *, voice: str | None = None, language: str = "en", rate: float = 1.0):
        yield AudioChunk(self.pcm, 24000, (), text)


class ZeroAnswerer:
    """Answers at once (no LLM): for the framework's share and the barge-in scenario."""

    name = "zero"

    def __init__(self, text: str = SHORT_ANSWER) -> None:
        self.text = text

    async def answer(self, turn: Any) -> None:
        turn.answered_by = self.name
        turn.say(self.text)


class PlainLLMAnswerer:
    """The question alone to the LLM through litellm (no retrieval, no tools): ``--answerer plain``."""

    name = "llm"

    def __init__(self, settings: Any, persona: Any) -> None:
        from fay_core.brain.llm import LLMClient, LLMConfig

        config = LLMConfig.resolve(settings.llm, persona)
        assert config is not None
        self.client = LLMClient(config)

    async def answer(self, turn: Any) -> None:
        turn.answered_by = self.name
        messages = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": turn.question}]
        async for chunk in self.client.stream(messages):
            content = getattr(chunk.choices[0].delta, "content", None) if chunk.choices else None
            if content:
                turn.say(content)


ANSWERER = "agent"


class ZeroPlugin:
    @hookimpl
    def register_asr_engines(self, register: Any) -> None:
        register("zero", ZeroASR)

    @hookimpl
    def register_tts_engines(self, register: Any) -> None:
        register("zero", ZeroTTS)


# --- scenarios --------------------------------------------------------------------------------------------


def bench_asr(en: list[tuple[str, bytes]]) -> dict[str, Any]:
    refs = {n: (DATA / "speech_en" / f"sense_and_sensibility_01_austen_64kb-{n}.txt").read_text()
            for n, _ in en if n != "english"}
    zh = load_audio(DATA / "speech_zh" / "BAC009S0764W0121.wav")
    out: dict[str, Any] = {}

    async def run() -> None:
        for model in ("base", "tiny.en"):
            asr = WhisperASR(WhisperSettings(model=model, download=False))
            await asr.warm_up()
            await asr.transcribe(en[0][1], 16000, language="en")  # warm caches
            audio = spent = 0.0
            pairs = []
            for name, pcm in en:
                if name not in refs:
                    continue
                t = time.perf_counter()
                got = await asr.transcribe(pcm, 16000, language="en")
                spent += time.perf_counter() - t
                audio += len(pcm) / 32000
                pairs.append((refs[name], got.text))
            row = {"rtf_en": round(spent / audio, 3), "wer_en": round(word_error_rate(pairs), 3)}
            if model == "base":
                t = time.perf_counter()
                await asr.transcribe(zh, 16000, language="zh")
                row["rtf_zh"] = round((time.perf_counter() - t) / (len(zh) / 32000), 3)
            out[model] = row

    asyncio.run(run())
    return out


def bench_vad(pcm: bytes) -> dict[str, float]:
    stream = SileroVAD().create_stream()
    windows = [pcm[i : i + 1024] for i in range(0, len(pcm) - 1024, 1024)]
    for w in windows[:20]:
        stream.probability(w)
    t = time.perf_counter()
    for w in windows:
        stream.probability(w)
    per_window = (time.perf_counter() - t) / len(windows)
    out = {"us_per_32ms_window": round(per_window * 1e6, 1), "us_per_20ms_frame": round(per_window * 1e6 * 20 / 32, 1),
           "cpu_share_per_session_pct": round(per_window / 0.032 * 100, 3)}
    vad = SileroVAD()
    if vad.batches():  # one call for the windows of many sessions (voice.vad.batch)
        for n in (10, 50, 200):
            streams = [vad.create_stream() for _ in range(n)]
            rounds = min(40, len(windows) // n)
            t = time.perf_counter()
            for k in range(rounds):
                vad.probabilities(streams, [windows[(k * n + i) % len(windows)] for i in range(n)])
            out[f"batched_{n}_us_per_window"] = round((time.perf_counter() - t) / (rounds * n) * 1e6, 1)
    return out


async def voice_turns(fay: Fay, en: list[tuple[str, bytes]], turns: int, *, zero: bool = False,
                      sessions: int = 1) -> list[dict[str, float]]:
    """Run ``turns`` voice turns in each of ``sessions`` sessions at once; the latency marks of each turn."""

    async def one(idx: int) -> list[dict[str, float]]:
        session = await fay.create_session("vera")
        session.persona = session.persona.model_copy(update={
            "interruption": InterruptionConfig(enabled=False),
            "voice": VoiceConfig(engine="zero" if zero else "piper"),
        })
        if zero:
            session.agent.answerer = ZeroAnswerer()
        elif ANSWERER == "plain":
            session.agent.answerer = PlainLLMAnswerer(fay.settings, session.persona)
        voice = await fay.assembly.add_voice(session)
        await asyncio.sleep(idx * 0.37)  # sessions do not speak in lock-step
        done: asyncio.Queue[int] = asyncio.Queue()
        session.bus.subscribe(lambda e: done.put_nowait(e.turn_id), AvatarStoppedSpeaking, drop_stale=False)
        marks = []
        for k in range(turns):
            _, pcm = en[(k + idx) % len(en)]
            await stream_pcm(session.bus, silence(200) + pcm + silence(600))
            try:
                while True:
                    tid = await asyncio.wait_for(done.get(), 30)
                    if tid == session.bus.turn_id:
                        break
            except TimeoutError:
                print(f"  session {idx} turn {k}: no answer audio in 30 s", file=sys.stderr)
                continue
            m = voice.latency.get(session.bus.turn_id, {})
            if m.get("first_audio_out") is not None and m.get("vad_end") is not None:
                marks.append(dict(m))
        await fay.close_session(session.id)
        return marks

    results = await asyncio.gather(*(one(i) for i in range(sessions)))
    return [m for r in results for m in r]


def stage_table(marks: list[dict[str, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for s in STAGES:
        out[s] = stats([m[s] for m in marks if s in m])
    prev = None
    for s in STAGES:  # time spent in each stage
        if prev is not None:
            out[f"{prev}->{s}"] = stats([m[s] - m[prev] for m in marks if s in m and prev in m])
        prev = s
    return out


async def bench_latency(args: argparse.Namespace, en: list[tuple[str, bytes]], tmp: Path) -> dict[str, Any]:
    async with FakeLLM(first_token_delay=args.first_token, responder=lambda body: Reply(SHORT_ANSWER)) as llm:
        settings = bench_settings(tmp / "lat", llm=LLMSettings(model=llm.model, api_base=llm.url))
        async with Fay(settings) as fay:
            await fay.plugins.engine("asr", "whisper").warm_up()
            await voice_turns(fay, en, 1)  # warm-up: litellm import, piper load
            marks = await voice_turns(fay, en, args.turns)
    return {"first_token_delay_s": args.first_token, "tts": "piper", "asr": "whisper base int8",
            "answerer": args.answerer,
            "stages_ms_since_speech_end": stage_table(marks)}


async def bench_framework(args: argparse.Namespace, en: list[tuple[str, bytes]], tmp: Path) -> dict[str, Any]:
    settings = bench_settings(tmp / "zero")
    settings.voice.asr.engine = "zero"
    settings.voice.asr.partials = False
    async with Fay(settings) as fay:
        fay.plugins.register(ZeroPlugin(), "bench_zero")
        short = [(n, p[: 16000 * 2 * 12 // 10]) for n, p in en[:2]]  # 1.2 s utterances
        await voice_turns(fay, short, 2, zero=True)
        marks = await voice_turns(fay, short, args.framework_turns, zero=True)
    queued = [m["tts_first_audio"] - m["vad_end"] for m in marks]
    out = [m["first_audio_out"] - m["vad_end"] for m in marks]
    return {"vad_end->audio_queued_ms": stats(queued), "vad_end->first_audio_out_ms": stats(out),
            "note": "first_audio_out: the first frame left the playout clock (after silence it is not held for "
                    "the next 20 ms tick)"}


async def bench_bargein(args: argparse.Namespace, en: list[tuple[str, bytes]], tmp: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    if True:  # the answer comes at once: this scenario measures the stop, not the LLM
        settings = bench_settings(tmp / "barge")
        async with Fay(settings) as fay:
            await fay.plugins.engine("asr", "whisper").warm_up()
            shipped = load_persona(ROOT / "personas" / "bank_teller_en.yaml").interruption
            for min_speech in ("default", 250, 150):
                true_lat, vad_lat = [], []
                for k in range(args.barge_trials):
                    session = await fay.create_session("vera")
                    session.persona = session.persona.model_copy(update={
                        "interruption": shipped if min_speech == "default" else InterruptionConfig(
                            min_speech_ms=int(min_speech), false_interruption_ms=1500),
                        "voice": VoiceConfig(engine="piper"),
                    })
                    session.agent.answerer = ZeroAnswerer(LONG_ANSWER)
                    await fay.assembly.add_voice(session)
                    got: dict[str, Any] = {}
                    started = asyncio.Event()

                    def on(e: Any, got: dict[str, Any] = got, started: asyncio.Event = started) -> None:
                        if isinstance(e, AvatarStartedSpeaking):
                            started.set()
                        elif isinstance(e, UserStartedSpeaking):
                            got.setdefault("onset", e.onset)
                        elif isinstance(e, PlayoutPaused):
                            got.setdefault("paused", e.ts)
                        elif isinstance(e, Interrupted):
                            got["interrupted"] = e

                    session.bus.subscribe(on, drop_stale=False)
                    session.submit("Tell me about savings accounts.")
                    await asyncio.wait_for(started.wait(), 30)
                    await asyncio.sleep(0.4 + 0.13 * k)
                    _, pcm = en[k % len(en)]
                    lead = silence(100)
                    t0 = time.monotonic()
                    true_onset = t0 + 0.1 + speech_onset(pcm)
                    await stream_pcm(session.bus, lead + pcm[: 16000 * 2 * 2] + silence(400))
                    for _ in range(100):
                        if "interrupted" in got:
                            break
                        await asyncio.sleep(0.05)
                    if "paused" in got:
                        true_lat.append((got["paused"] - true_onset) * 1000)
                        vad_lat.append((got["paused"] - got["onset"]) * 1000)
                        print(f"  barge-in {min_speech} ms #{k}: stop {true_lat[-1]:.0f} ms after the speech onset "
                              f"({vad_lat[-1]:.0f} after the VAD's)", file=sys.stderr)
                    else:
                        print(f"  barge-in {min_speech} ms #{k}: playout never paused", file=sys.stderr)
                    await fay.close_session(session.id)
                results["default" if min_speech == "default" else f"min_speech_{min_speech}ms"] = {
                    "stop_from_true_onset_ms": stats(true_lat), "stop_from_vad_onset_ms": stats(vad_lat),
                }
    return results


async def bench_concurrency(args: argparse.Namespace, en: list[tuple[str, bytes]], tmp: Path) -> dict[str, Any]:
    levels: dict[str, Any] = {}
    base_p95 = None
    async with FakeLLM(first_token_delay=args.first_token, responder=lambda body: Reply(SHORT_ANSWER)) as llm:
        settings = bench_settings(tmp / "conc", llm=LLMSettings(model=llm.model, api_base=llm.url))
        async with Fay(settings) as fay:
            await fay.plugins.engine("asr", "whisper").warm_up()
            await voice_turns(fay, en, 1)
            sustained = 1
            for n in (1, 2, 3, 4, 6, 8):
                marks = await voice_turns(fay, en, args.conc_turns, sessions=n)
                lat = [m["first_audio_out"] for m in marks]
                row = stats(lat)
                levels[str(n)] = row
                print(f"  {n} sessions: end of speech -> first audio p50 {row['p50']} ms, p95 {row['p95']} ms",
                      file=sys.stderr)
                if base_p95 is None:
                    base_p95 = row["p95"]
                elif row["p95"] > 2 * base_p95:
                    break
                sustained = n
    return {"levels": levels, "sessions_before_p95_doubles": sustained}


def gated_fay(settings: Any) -> Fay:
    """Fay with the smart_turn plugin (registered by hand where the installed entry points predate it)."""
    import fay_smart_turn

    plugins = Plugins(settings).load()
    if "smart_turn" not in {i.name for i in plugins.infos}:
        plugins.register(fay_smart_turn, "smart_turn")
    return Fay(settings, plugins)


def boundaries(pcm: bytes) -> list[int]:
    """Sample offsets of the pauses the VAD finds inside ``pcm`` (phrase boundaries), not in its last 0.5 s."""
    seg = Segmenter(SileroVAD().create_stream(), SegmenterConfig(min_silence_ms=100000))
    out, t = [], 0.0
    for i in range(0, len(pcm), 640):
        t += 0.02
        for ev in seg.feed(pcm[i : i + 640], t):
            if isinstance(ev, SpeechPaused):
                at = int(ev.at * 16000)
                if 8000 < at < len(pcm) // 2 - 8000 and (not out or at - out[-1] > 8000):
                    out.append(at)
    return out


def speech_end(pcm: bytes) -> float:
    """Seconds into ``pcm`` where its speech ends: the end of the last 32 ms window Silero scores as speech (the
    LibriVox clips carry recording noise to their end, so energy alone does not find it)."""
    stream = SileroVAD().create_stream()
    last = 0
    for i in range(0, len(pcm) - 1024, 1024):
        if stream.probability(pcm[i : i + 1024]) >= 0.5:
            last = i + 1024
    return last / 32000


def turn_clips() -> list[tuple[str, str, bytes]]:
    """(name, language, pcm) of the shared clips, or none with a note when the shared data is missing."""
    if not (DATA / "speech_en").is_dir():
        print(f"  turn_taking: skipped, no shared clips at {DATA}", file=sys.stderr)
        return []
    out = [(n, "en", p) for n, p in clips() if n != "english"]
    out.append(("0870", "en", load_audio(DATA / "speech_en" / "sense_and_sensibility_01_austen_64kb-0870.wav")))
    out.append(("jfk", "en", load_audio(DATA / "speech_en" / "jfk.flac")))
    out.append(("aishell", "zh", load_audio(DATA / "speech_zh" / "BAC009S0764W0121.wav")))
    return out


async def bench_turn_taking(args: argparse.Namespace, en: list[tuple[str, bytes]], tmp: Path) -> dict[str, Any]:
    rng = np.random.default_rng(12)
    items = turn_clips()
    paused: list[tuple[str, str, bytes]] = []
    for name, lang, pcm in items:
        for b in boundaries(pcm)[:3]:
            gap = silence(int(rng.integers(500, 801)))
            paused.append((name, lang, pcm[: b * 2] + gap + pcm[b * 2 :]))
    out: dict[str, Any] = {"paused_utterances": len(paused), "complete_utterances": len(items)}

    async def run(engine: str) -> dict[str, Any]:
        settings = bench_settings(tmp / f"turn-{engine}")
        settings.voice.asr.engine = "zero"
        settings.voice.asr.partials = False
        settings.voice.turn.engine = engine
        zh = tmp / f"turn-{engine}" / "personas" / "vera_zh.yaml"
        zh.write_text(PERSONA.replace("language: en", "language: zh"), encoding="utf-8")
        async with gated_fay(settings) as fay:
            fay.plugins.register(ZeroPlugin(), "bench_zero")
            sessions = {}
            ends: dict[str, list[float]] = {"en": [], "zh": []}
            for lang in ("en", "zh"):
                session = await fay.create_session("vera" if lang == "en" else "vera_zh")
                session.persona = session.persona.model_copy(update={
                    "interruption": InterruptionConfig(enabled=False), "voice": VoiceConfig(engine="zero")})
                session.agent.answerer = ZeroAnswerer("Sure.")
                voice = await fay.assembly.add_voice(session)
                await voice.warm_up()
                sessions[lang] = session
                session.bus.subscribe(lambda e, lang=lang: ends[lang].append(e.ts), UserStoppedSpeaking,
                                      drop_stale=False)
            cut = {"en": [0, 0], "zh": [0, 0]}
            for _, lang, pcm in paused:
                session = sessions[lang]
                ends[lang].clear()
                await stream_pcm(session.bus, silence(300) + pcm + silence(2000))
                await asyncio.sleep(0.5)
                cut[lang][0] += len(ends[lang]) > 1
                cut[lang][1] += 1
            waits: dict[str, list[float]] = {"en": [], "zh": []}
            for _, lang, pcm in items:
                session = sessions[lang]
                ends[lang].clear()
                t0 = time.monotonic()
                await stream_pcm(session.bus, silence(300) + pcm + silence(2500))
                await asyncio.sleep(0.3)
                if ends[lang]:
                    true_end = t0 + 0.3 + speech_end(pcm)
                    waits[lang].append((ends[lang][-1] - true_end) * 1000)
            gate = sessions["en"].voice.turn_gate  # type: ignore[union-attr]
            fallbacks = sum(s.voice.turn_gate.fallbacks for s in sessions.values())  # type: ignore[union-attr]
        n_cut = sum(c[0] for c in cut.values())
        n = sum(c[1] for c in cut.values())
        return {
            "detector": getattr(gate.detector, "name", "none"),
            "false_cutoff_rate": round(n_cut / max(1, n), 3),
            "false_cutoff_by_language": {k: f"{c[0]}/{c[1]}" for k, c in cut.items()},
            "end_wait_ms": stats(waits["en"] + waits["zh"]),
            "fallbacks": fallbacks,
        }

    out["gate"] = await run("auto")
    print(f"  turn gate: {out['gate']}", file=sys.stderr)
    out["silence_rule"] = await run("none")
    print(f"  silence rule: {out['silence_rule']}", file=sys.stderr)
    return out


def cough(ms: int = 250) -> bytes:
    """A synthetic cough: a burst of band-limited noise with a fast attack and a decay."""
    rng = np.random.default_rng(3)
    n = 16 * ms
    noise = np.convolve(rng.standard_normal(n), np.ones(6) / 6, mode="same")
    env = np.minimum(1.0, np.arange(n) / 160) * np.exp(-np.arange(n) / (n / 3))
    return (noise * env * 12000).astype(np.int16).tobytes()


async def bench_backchannel(args: argparse.Namespace, en: list[tuple[str, bytes]], tmp: Path) -> dict[str, Any]:
    settings = bench_settings(tmp / "backch")
    shipped = load_persona(ROOT / "personas" / "bank_teller_en.yaml").interruption
    rows: dict[str, Any] = {}
    cancels = total = 0
    async with Fay(settings) as fay:
        await fay.plugins.engine("asr", "whisper").warm_up()
        piper = fay.plugins.engine("tts", "piper")
        sounds: list[tuple[str, bytes]] = []
        for text in ("Mm-hm.", "Yeah.", "Right.", "Okay."):
            pcm = b""
            async for chunk in piper.synthesize(text):
                pcm += resample(chunk.pcm, chunk.sample_rate, 16000)
            sounds.append((text, pcm))
        sounds.append(("(cough)", cough()))
        for k in range(args.backchannel_trials):
            label, pcm = sounds[k % len(sounds)]
            session = await fay.create_session("vera")
            session.persona = session.persona.model_copy(update={"interruption": shipped,
                                                                 "voice": VoiceConfig(engine="piper")})
            session.agent.answerer = ZeroAnswerer(LONG_ANSWER)
            await fay.assembly.add_voice(session)
            got: dict[str, Any] = {}
            started = asyncio.Event()

            def on(e: Any, got: dict[str, Any] = got, started: asyncio.Event = started) -> None:
                if isinstance(e, AvatarStartedSpeaking):
                    started.set()
                elif isinstance(e, Interrupted):
                    got["interrupted"] = e
                elif isinstance(e, PlayoutPaused):
                    got["paused"] = True

            session.bus.subscribe(on, drop_stale=False)
            session.submit("Tell me about savings accounts.")
            await asyncio.wait_for(started.wait(), 30)
            await asyncio.sleep(0.5 + 0.11 * k)
            await stream_pcm(session.bus, silence(100) + pcm + silence(1500))
            cancelled = "interrupted" in got
            row = rows.setdefault(label, {"cancelled": 0, "paused": 0, "n": 0})
            row["cancelled"] += cancelled
            row["paused"] += "paused" in got
            row["n"] += 1
            cancels += cancelled
            total += 1
            await fay.close_session(session.id)
    return {"false_cancel_rate": round(cancels / max(1, total), 3), "by_sound": rows,
            "note": "English only (Piper); the Mandarin fillers are covered by tests of real_words, not measured"}


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


async def scale_level(fay: Fay, n: int, clips_: list[bytes], turns: int, period_s: float) -> dict[str, Any]:
    """``n`` sessions with live microphones in one process; each says ``turns`` utterances ``period_s`` apart."""
    from fay_core.events import AudioReceived

    rng = np.random.default_rng(n)
    sessions = []
    for _ in range(n):
        session = await fay.create_session("vera")
        session.persona = session.persona.model_copy(update={
            "interruption": InterruptionConfig(enabled=False), "voice": VoiceConfig(engine="zero")})
        session.agent.answerer = ZeroAnswerer("Sure.")
        session.disclosure.deliver("voice")  # as if said before: its audio would delay the first answer
        voice = await fay.assembly.add_voice(session)
        sessions.append((session, voice))
    v = fay.settings.voice.vad
    nominal_ms = -(-v.min_silence_ms // 32) * 32  # the silence the segmenter needs, in whole windows
    frame = 640  # 20 ms at 16 kHz
    quiet = bytes(frame)
    # each session's microphone: silence, and its utterances at a random phase (they do not speak in lock-step)
    mics = []
    for i in range(n):
        start = float(rng.uniform(0.3, period_s))
        plan = [(start + k * period_s, clips_[(i + k) % len(clips_)]) for k in range(turns)]
        mics.append({"plan": plan, "buf": bytearray(), "phase": i % 4})
    duration = max(p[-1][0] for p in (m["plan"] for m in mics)) + 2.0
    load0 = os.getloadavg()
    cpu0, loop0, t0 = time.process_time(), time.thread_time(), time.monotonic()
    sent = [0] * n
    # one 5 ms clock; session i's k-th frame is due at t0 + phase + k * 20 ms (4 phases) and carries that time as
    # its arrival: a late clock sends what is due at once (as a network does after a stall), and the lag counts
    while (now := time.monotonic()) - t0 < duration:
        for i, ((session, _), mic) in enumerate(zip(sessions, mics, strict=True)):
            offset = mic["phase"] * 0.005
            due = int((now - t0 - offset) / 0.02) + 1
            while sent[i] < due:
                at = t0 + offset + sent[i] * 0.02
                plan = mic["plan"]
                while plan and at - t0 >= plan[0][0]:
                    mic["buf"] += plan.pop(0)[1]
                buf = mic["buf"]
                pcm = bytes(buf[:frame]) if buf else quiet
                del buf[:frame]
                if len(pcm) < frame:
                    pcm += bytes(frame - len(pcm))
                session.bus.publish(AudioReceived(session_id=session.id, pcm=pcm, sample_rate=16000, ts=at))
                sent[i] += 1
        await asyncio.sleep(max(0.0, t0 + (int((now - t0) / 0.005) + 1) * 0.005 - time.monotonic()))
    for _ in range(100):  # the last answers (up to 10 s more; turns still unanswered then are counted as such)
        if sum(sum("first_audio_out" in m for m in vo.latency.values()) for _, vo in sessions) >= n * turns:
            break
        await asyncio.sleep(0.1)
    wall = time.monotonic() - t0
    cpu, loop_cpu = time.process_time() - cpu0, time.thread_time() - loop0
    rss = _rss_mb()
    turn, vad_end, after_vad = [], [], []
    for _, voice in sessions:
        for marks in voice.latency.values():
            if "first_audio_out" in marks and "vad_end" in marks:
                turn.append(marks["first_audio_out"] - nominal_ms)
                vad_end.append(marks["vad_end"] - nominal_ms)
                after_vad.append(marks["first_audio_out"] - marks["vad_end"])
    batcher = sessions[0][1].listener.batcher
    row: dict[str, Any] = {
        "turn_ms": stats(turn), "vad_decision_lag_ms": stats(vad_end), "vad_end->first_audio_out_ms": stats(after_vad),
        "turns_expected": n * turns, "turns_answered": len(turn),
        "cpu_pct": round(cpu / wall * 100, 1), "event_loop_cpu_pct": round(loop_cpu / wall * 100, 1),
        "cpu_ms_per_session_s": round(cpu / wall / n * 1000, 2),  # meaningful while the level keeps up
        "rss_mb": rss, "load_avg_1m": [round(load0[0], 2), round(os.getloadavg()[0], 2)],
        "batched_sessions": sum(1 for _, vo in sessions if vo.listener.batched),
    }
    if batcher is not None:
        row["windows_per_call"] = round(batcher.windows / max(1, batcher.calls), 1)
        row["largest_call"] = batcher.largest
    for session, _ in sessions:
        await fay.close_session(session.id)
    return row


async def bench_scale(args: argparse.Namespace, en: list[tuple[str, bytes]], tmp: Path) -> dict[str, Any]:
    clips_ = [p[: 16000 * 2 * 3 // 2] for _, p in en[:4]]  # 1.5 s utterances
    out: dict[str, Any] = {
        "engines": "real Silero VAD; zero-latency ASR, answerer, TTS; turn gate off (silence rule)",
        "turn_ms": "first audio out minus (speech end + min_silence_ms in whole 32 ms windows)",
        "cpu_pct": "process CPU time / wall time (100 = one core); event_loop_cpu_pct: the event loop thread's; "
                   "cpu_ms_per_session_s: CPU ms per session per second (the cost, while a level keeps up)",
        "note": "measured on a shared machine: see each level's load_avg_1m (start, end)",
    }
    for mode in args.scale_modes.split(","):
        settings = bench_settings(tmp / f"scale-{mode}")
        settings.voice.asr.engine = "zero"
        settings.voice.asr.partials = False
        settings.voice.turn.engine = "none"
        settings.voice.vad.batch = mode != "per_session"
        settings.server.max_sessions = max(int(x) for x in args.scale_sessions.split(",")) + 1
        if mode == "batched_nowait":
            settings.voice.vad.batch_wait_ms = 0
        levels: dict[str, Any] = {}
        async with Fay(settings) as fay:
            fay.plugins.register(ZeroPlugin(), "bench_zero")
            await scale_level(fay, 1, clips_, 1, 1.5)  # warm-up: models, imports
            for n in (int(x) for x in args.scale_sessions.split(",")):
                row = await scale_level(fay, n, clips_, args.scale_turns, args.scale_period)
                levels[str(n)] = row
                print(f"  {mode} {n:>3} sessions: turn p50 {row['turn_ms']['p50']} p95 {row['turn_ms']['p95']} ms, "
                      f"{row['turns_answered']}/{row['turns_expected']} turns, CPU {row['cpu_pct']}% "
                      f"(loop {row['event_loop_cpu_pct']}%), RSS {row['rss_mb']} MB, load {row['load_avg_1m']}",
                      file=sys.stderr)
        out[mode] = levels
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--turns", type=int, default=8, help="voice turns for the latency scenario")
    ap.add_argument("--framework-turns", type=int, default=20)
    ap.add_argument("--barge-trials", type=int, default=8)
    ap.add_argument("--conc-turns", type=int, default=3, help="voice turns per session at each concurrency level")
    ap.add_argument("--backchannel-trials", type=int, default=10)
    ap.add_argument("--first-token", type=float, default=0.2, help="fake LLM first-token delay (s)")
    ap.add_argument("--scale-sessions", default="1,10,50,100,200", help="session counts for the scale scenario")
    ap.add_argument("--scale-modes", default="batched,per_session",
                    help="VAD modes for the scale scenario: batched, batched_nowait, per_session")
    ap.add_argument("--scale-turns", type=int, default=3, help="utterances per session at each scale level")
    ap.add_argument("--scale-period", type=float, default=3.0, help="seconds between a session's utterances")
    ap.add_argument("--only",
                    default="asr,vad,latency,framework,bargein,concurrency,turn_taking,backchannel,scale")
    ap.add_argument("--answerer", choices=["agent", "plain"], default="agent",
                    help="agent: the persona's real answerer (RAG, tools); plain: the question alone to the LLM")
    args = ap.parse_args()
    global ANSWERER
    ANSWERER = args.answerer
    only = set(args.only.split(","))
    en = clips()
    report: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                          "load_avg_at_start": os.getloadavg()}}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if "asr" in only:
            report["asr"] = bench_asr(en)
        if "vad" in only:
            report["vad"] = bench_vad(b"".join(p for _, p in en))
        for name, fn in (("latency", bench_latency), ("framework", bench_framework), ("bargein", bench_bargein),
                         ("concurrency", bench_concurrency), ("turn_taking", bench_turn_taking),
                         ("backchannel", bench_backchannel), ("scale", bench_scale)):
            if name in only:
                print(f"running {name} ...", file=sys.stderr)
                report[name] = asyncio.run(fn(args, en, tmp))
    report["machine"]["load_avg_at_end"] = os.getloadavg()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "voice.json").write_text(json.dumps(report, indent=2))
    print_table(report)


def print_table(r: dict[str, Any]) -> None:
    print(f"\nvoice benchmark ({r['machine']['cpus']} CPUs, load {r['machine']['load_avg_at_start'][0]:.1f})")
    if "asr" in r:
        print("\nASR (whisper, int8)           RTF en   WER en   RTF zh")
        for model, row in r["asr"].items():
            print(f"  {model:<27} {row['rtf_en']:>6}   {row['wer_en']:>6}   {row.get('rtf_zh', '')!s:>6}")
    if "vad" in r:
        v = r["vad"]
        print(f"\nVAD: {v['us_per_32ms_window']} us per 32 ms window, {v['us_per_20ms_frame']} us per 20 ms frame "
              f"({v['cpu_share_per_session_pct']}% of a core per session)")
        batched = {k: val for k, val in v.items() if k.startswith("batched_")}
        if batched:
            print("  batched across sessions, us per window: " + ", ".join(f"{k.split('_')[1]} sessions {val}"
                                                                         for k, val in batched.items()))
    if "latency" in r:
        print(f"\nend of speech -> first audio (ms), LLM first token {r['latency']['first_token_delay_s']} s, piper")
        print("  stage                               p50      p95    n")
        for k, row in r["latency"]["stages_ms_since_speech_end"].items():
            print(f"  {k:<34} {row['p50']:>7}  {row['p95']:>7}  {row['n']:>3}")
    if "framework" in r:
        f = r["framework"]
        print("\nframework's own share, zero-latency engines (ms)   p50     p95")
        for k in ("vad_end->audio_queued_ms", "vad_end->first_audio_out_ms"):
            print(f"  {k:<47} {f[k]['p50']:>6}  {f[k]['p95']:>6}")
    if "bargein" in r:
        print("\nbarge-in stop latency (ms)                      p50     p95    n")
        for cfg, row in r["bargein"].items():
            for k, s in row.items():
                print(f"  {cfg + ' ' + k:<45} {s['p50']:>6}  {s['p95']:>6}  {s['n']:>3}")
    if "concurrency" in r:
        c = r["concurrency"]
        print("\nconcurrent voice sessions: end of speech -> first audio (ms)")
        for n, row in c["levels"].items():
            print(f"  {n:>2} sessions   p50 {row['p50']:>7}   p95 {row['p95']:>7}   turns {row['n']}")
        print(f"  sustained before p95 doubles: {c['sessions_before_p95_doubles']}")
    if "turn_taking" in r:
        t = r["turn_taking"]
        print(f"\nturn taking ({t['paused_utterances']} paused, {t['complete_utterances']} complete utterances)")
        print("  rule           false cut-offs   end wait p50   p95")
        for k in ("gate", "silence_rule"):
            if k in t:
                row = t[k]
                print(f"  {k:<14} {row['false_cutoff_rate']:>14}   {row['end_wait_ms']['p50']:>12}  "
                      f"{row['end_wait_ms']['p95']:>5}")
    if "backchannel" in r:
        print(f"\nbackchannels over the avatar: false cancel rate {r['backchannel']['false_cancel_rate']}")
    if "scale" in r:
        print("\nmany sessions in one process (zero-latency engines, real VAD): turn ms from the silence rule's end")
        print("  mode          sessions   p50     p95   turns      CPU%  loop%   RSS MB   load 1m")
        for mode, levels in r["scale"].items():
            if not isinstance(levels, dict):
                continue
            for n, row in levels.items():
                print(f"  {mode:<13} {n:>8} {row['turn_ms']['p50']:>6} {row['turn_ms']['p95']:>7}  "
                      f"{row['turns_answered']:>3}/{row['turns_expected']:<4} {row['cpu_pct']:>6} "
                      f"{row['event_loop_cpu_pct']:>6} {row['rss_mb']:>8}   {row['load_avg_1m']}")
    print(f"\nwritten to {RESULTS / 'voice.json'}")


if __name__ == "__main__":
    main()
