"""Remote speech benchmark: what the hop to a shared speech server costs a voice turn.

The same engines run twice: in this process (faster-whisper's packaged base model, piper's joe voice), and behind
``fay_core.testing.SpeechServer`` on loopback reached through the ``remote`` engines (litellm's ``atranscription``
and ``aspeech``, WAV over HTTP). The difference is the client, the HTTP round trip and the WAV coding, not a
faster machine: on a real deployment the server's GPU makes the remote side faster, and the hop measured here is
what remains of the cost.

Rows: ASR of a 4 s English utterance; TTS of one answer sentence. p50/p95/mean in ms over ``--runs``.
Prints a table and writes ``bench/results/remote_speech.json``.

    python bench/remote_speech.py [--runs 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "plugins"))

from fay_core.testing import SpeechServer  # noqa: E402
from fay_core.voice.audio import load_audio  # noqa: E402
from fay_piper import PiperTTS  # noqa: E402
from fay_remote_speech import RemoteASR, RemoteSpeechSettings, RemoteTTS  # noqa: E402
from fay_whisper import WhisperASR, WhisperSettings  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CLIP = ROOT.parent / "shared" / "data" / "speech_en" / "sense_and_sensibility_01_austen_64kb-0880.wav"
SENTENCE = "Our branches open at nine in the morning, Monday to Friday."


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def _stats(lat: list[float]) -> dict[str, float]:
    return {"p50_ms": _pct(lat, 0.5), "p95_ms": _pct(lat, 0.95), "mean_ms": sum(lat) / len(lat)}


async def _timed(runs: int, *calls: Callable[[], Awaitable[Any]]) -> list[dict[str, float]]:
    """Each call ``runs`` times, interleaved (a machine whose load drifts biases neither side)."""
    for call in calls:
        await call()  # the first call loads models and imports litellm: not measured
    lat: list[list[float]] = [[] for _ in calls]
    for _ in range(runs):
        for i, call in enumerate(calls):
            t = time.perf_counter()
            await call()
            lat[i].append((time.perf_counter() - t) * 1000)
    return [_stats(x) for x in lat]


async def _speak(engine: Any) -> bytes:
    pcm = b""
    async for chunk in engine.synthesize(SENTENCE):
        pcm += chunk.pcm
    return pcm


async def main(runs: int) -> dict[str, Any]:
    pcm = load_audio(CLIP)
    whisper, piper = WhisperASR(WhisperSettings(download=False)), PiperTTS()
    async with SpeechServer(whisper, piper) as server:
        settings = RemoteSpeechSettings(api_base=server.url, timeout_s=60)
        remote_asr, remote_tts = RemoteASR(settings), RemoteTTS(settings)
        rows = []
        for name, local, remote in (
            ("asr", lambda: whisper.transcribe(pcm, 16000, language="en"),
             lambda: remote_asr.transcribe(pcm, 16000, language="en")),
            ("tts", lambda: _speak(piper), lambda: _speak(remote_tts)),
        ):
            here, there = await _timed(runs, local, remote)
            rows.append({"stage": name, "local": here, "remote": there,
                         "hop_p50_ms": there["p50_ms"] - here["p50_ms"]})
    return {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "runs": runs, "utterance_s": len(pcm) / 2 / 16000, "sentence": SENTENCE, "rows": rows}


def print_table(r: dict[str, Any]) -> None:
    print(f"remote speech benchmark ({r['runs']} runs, utterance {r['utterance_s']:.1f} s, loopback server with the "
          "same engines)")
    print(f"{'stage':6} {'local p50':>10} {'local p95':>10} {'remote p50':>11} {'remote p95':>11} {'hop p50':>8}")
    for row in r["rows"]:
        lo, re_ = row["local"], row["remote"]
        print(f"{row['stage']:6} {lo['p50_ms']:10.0f} {lo['p95_ms']:10.0f} {re_['p50_ms']:11.0f} {re_['p95_ms']:11.0f} "
              f"{row['hop_p50_ms']:8.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    result = asyncio.run(main(parser.parse_args().runs))
    print_table(result)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "remote_speech.json").write_text(json.dumps(result, indent=2))
    print(f"wrote {RESULTS / 'remote_speech.json'}")
