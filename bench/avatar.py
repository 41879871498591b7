"""Avatar renderer benchmark: stream sizes, CPU per session, frame pacing, sessions per core.

For each built-in renderer (``params3d``: ARKit-52 + head over the data channel; ``live2d``: Cubism parameters;
``video2d``: the code-drawn portrait as video), with real Piper speech scheduled on real playout clocks:

- **bytes/s per session**: the binary parameter stream as sent (headers included) at the default 50 fps, against
  the 2D video encoded by aiortc's own VP8 encoder (what the WebRTC track sends; aiortc's default 500 kbps target,
  which congestion control moves between 250 kbps and 1.5 Mbps) and, for reference, its H.264 encoder;
- **renderer CPU per session**: CPU seconds per second of animation (timeline + mapping + encoding of the
  parameter frames; for video: drawing + the RGB→frame conversion, and the VP8 encode on top), measured offline
  over 30 s of frames in one thread;
- **sessions per core** = 1 / that CPU share (the renderer's own work; audio, ASR, TTS and transport not included);
- **p99 inter-frame gap**: N sessions live at once on one event loop (each its own bus, playout clock, timeline and
  renderer; video tracks pulled like aiortc does), wall-clock gaps between consecutive frames of a session.

``--browser`` also measures the A/V offset at the client in headless Chromium (see tests/test_avatar_browser.py):
the offset between the mouth shown and the answer audio heard, for each renderer, over a second answer (the
first one lets the viewer lock onto the audio stream).

Prints a table and writes ``bench/results/avatar.json``.

    python bench/avatar.py [--seconds 30] [--live-seconds 10] [--sessions 10] [--browser]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from fay_core.avatar.lipsync import analyse  # noqa: E402
from fay_core.avatar.renderer import ParameterStream  # noqa: E402
from fay_core.avatar.rig import AvatarState  # noqa: E402
from fay_core.avatar.stream import HEADER  # noqa: E402
from fay_core.avatar.timeline import AnimationTimeline  # noqa: E402
from fay_core.bus import Bus  # noqa: E402
from fay_core.engines import AudioChunk  # noqa: E402
from fay_core.persona import AvatarConfig  # noqa: E402
from fay_core.voice.audio import resample  # noqa: E402
from fay_core.voice.playout import Playout  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SENTENCES = [
    "Our branches are open from nine in the morning to five in the afternoon, Monday to Friday.",
    "You can block a lost card at once in the app, or call us and we will send you a new one.",
    "The fixed deposit rate is listed on our product sheet; I can read it to you if you like.",
]


def speech() -> list[tuple[bytes, int]]:
    from fay_piper import DEFAULT_VOICE, PiperTTS

    tts = PiperTTS()
    return [tts._run(s, DEFAULT_VOICE, 1.0) for s in SENTENCES]


def renderers() -> dict[str, Any]:
    import fay_avatar_live2d
    import fay_avatar_params3d
    import fay_avatar_video2d

    return {"params3d": fay_avatar_params3d._factory(), "live2d": fay_avatar_live2d._factory(),
            "video2d": fay_avatar_video2d._factory()}


# --- offline: bytes and CPU ---------------------------------------------------------------------------------


def offline(name: str, renderer: Any, clips: list[tuple[bytes, int]], seconds: float) -> dict[str, Any]:
    """Drive one session's timeline with 30 s of frames (speech ~75% of the time) as fast as it goes."""
    tl = AnimationTimeline(Bus(f"bench-{name}"), seed=1)
    out: dict[str, Any] = {"renderer": name}
    sent = {"bytes": 0, "frames": 0, "headers": 0}
    if renderer.info.kind == "data":
        stream = ParameterStream(renderer, tl, fps=renderer.default_fps)

        def count(payload: bytes, pts: float, turn_id: int) -> None:
            sent["bytes"] += len(payload)
            if payload[0] == HEADER:
                sent["headers"] += 1
            else:
                sent["frames"] += 1

        stream.add_listener(count)
        draw = None
    else:
        from fay_core.avatar.portrait import Portrait

        portrait = Portrait()
        states: list[AvatarState] = []
        tl.add_listener(states.append)
        draw = portrait
    pcm48 = [resample(p, r, 48000) for p, r in clips]
    frames = int(seconds / 0.02)
    cpu0 = time.process_time()
    pts, i, turn = 0.0, 0, 1
    while pts < seconds:  # schedule speech chunks with 0.5 s pauses; analyse them as the timeline does
        pcm = pcm48[i % len(pcm48)]
        tl.add_track(analyse(pcm, 48000, pts=pts, turn_id=turn))
        pts += len(pcm) / 2 / 48000 + 0.5
        i += 1
    analysis_cpu = time.process_time() - cpu0
    # the audio frames as the playout would release them
    audio = np.zeros(int(pts * 48000) + 960, dtype=np.int16)
    t = 0.0
    for k in range(i):
        pcm = np.frombuffer(pcm48[k % len(pcm48)], dtype=np.int16)
        a = int(t * 48000)
        audio[a : a + len(pcm)] = pcm
        t += len(pcm) / 96000 + 0.5
    cpu1 = time.process_time()
    for n in range(frames):
        tl.on_audio(audio[n * 960 : (n + 1) * 960].tobytes(), n * 0.02, turn)
    timeline_cpu = time.process_time() - cpu1
    if draw is not None:
        from av import VideoFrame

        cpu2 = time.process_time()
        video = [VideoFrame.from_ndarray(draw.render(s), format="rgb24") for s in states[::2]]  # 25 fps
        draw_cpu = time.process_time() - cpu2
        out.update(video_encoding(video, seconds))
        out["draw_cpu_per_s"] = draw_cpu / seconds
        cpu_per_s = (analysis_cpu + timeline_cpu + draw_cpu) / seconds
        out["frames"] = len(video)
        out["fps"] = len(video) / seconds
        out["cpu_per_s_with_encode"] = cpu_per_s + out["vp8_encode_cpu_per_s"]
    else:
        cpu_per_s = (analysis_cpu + timeline_cpu) / seconds
        out["bytes_per_s"] = sent["bytes"] / seconds
        out["frame_bytes"] = (sent["bytes"] - sent["headers"] * len(stream.header())) / max(1, sent["frames"])
        out["header_bytes"] = len(stream.header())
        out["frames"] = sent["frames"]
        out["fps"] = sent["frames"] / seconds
        out["channels"] = len(renderer.channels)
    out["cpu_per_s"] = cpu_per_s
    out["sessions_per_core"] = 1 / cpu_per_s
    if "cpu_per_s_with_encode" in out:
        out["sessions_per_core_with_encode"] = 1 / out["cpu_per_s_with_encode"]
    return out


def video_encoding(frames: list[Any], seconds: float) -> dict[str, float]:
    """Bitrate and CPU of aiortc's VP8 (default target) and H.264 encoders on the portrait frames."""
    from aiortc.codecs.h264 import H264Encoder
    from aiortc.codecs.vpx import Vp8Encoder

    from fay_core.avatar.video import VIDEO_TIME_BASE

    out: dict[str, float] = {}
    for label, enc in (("vp8", Vp8Encoder()), ("h264", H264Encoder())):
        total = 0
        cpu = time.process_time()
        for n, f in enumerate(frames):
            f.pts = n * 3600
            f.time_base = VIDEO_TIME_BASE
            payloads, _ = enc.encode(f)
            total += sum(len(p) for p in payloads)
        out[f"{label}_encode_cpu_per_s"] = (time.process_time() - cpu) / seconds
        out[f"{label}_bytes_per_s"] = total / seconds
    return out


# --- live: many sessions on one loop --------------------------------------------------------------------------


async def live(name: str, renderer: Any, clips: list[tuple[bytes, int]], sessions: int, seconds: float) -> dict:
    """``sessions`` concurrent sessions on real playout clocks; wall-clock gaps between each session's frames."""
    gaps: list[float] = []
    last: dict[str, float] = {}
    buses: list[Bus] = []
    pullers: list[asyncio.Task[None]] = []
    streams: list[Any] = []
    timelines: list[AnimationTimeline] = []
    warm = 1.0  # ignore the first second (start-up)
    t_start = time.monotonic()

    def mark(sid: str) -> None:
        now = time.monotonic()
        if now - t_start > warm and sid in last:
            gaps.append(now - last[sid])
        last[sid] = now

    for k in range(sessions):
        bus = Bus(f"live-{name}-{k}")
        playout = Playout(bus)
        tl = AnimationTimeline(bus)
        tl.follow(playout)
        tl.start()
        timelines.append(tl)
        stream = await renderer.start(tl, AvatarConfig())
        streams.append(stream)
        if renderer.info.kind == "data":
            stream.add_listener(lambda payload, pts, turn, sid=bus.session_id: mark(sid) if payload[0] != HEADER
                                else None)
        else:
            async def pull(track: Any = stream.video_track, sid: str = bus.session_id) -> None:
                while True:
                    await track.recv()
                    mark(sid)

            pullers.append(asyncio.get_running_loop().create_task(pull()))
        playout.start()
        turn = bus.new_turn()
        for j in range(int(seconds / 4) + 2):  # keep talking
            pcm, rate = clips[(k + j) % len(clips)]
            playout.schedule(turn, AudioChunk(pcm, rate, (), SENTENCES[(k + j) % len(clips)]))
        buses.append(bus)
    cpu0 = time.process_time()
    await asyncio.sleep(seconds)
    cpu = time.process_time() - cpu0
    for task in pullers:
        task.cancel()
    await asyncio.gather(*pullers, return_exceptions=True)
    for stream in streams:
        await stream.stop()
    for tl in timelines:
        await tl.stop()
    for bus in buses:
        await bus.close()
    g = np.array(gaps) * 1000
    return {
        "renderer": name, "sessions": sessions, "seconds": seconds, "frames": len(g),
        "gap_ms_p50": float(np.percentile(g, 50)) if len(g) else float("nan"),
        "gap_ms_p99": float(np.percentile(g, 99)) if len(g) else float("nan"),
        "gap_ms_max": float(g.max()) if len(g) else float("nan"),
        "process_cpu_per_s_all_sessions": cpu / seconds,
    }


# --- browser: A/V offset at the client ------------------------------------------------------------------------


TESTS = Path(__file__).resolve().parent.parent / "tests"


async def browser(rounds: int) -> list[dict[str, Any]]:
    import tempfile

    from aiohttp.test_utils import TestServer

    sys.path.insert(0, str(TESTS))
    import test_avatar_browser as tb  # the test's personas and driver

    from fay_core.app import Fay
    from fay_core.avatar.measure import av_offset
    from fay_core.server import create_app
    from fay_core.testing import test_settings

    tb.check_browser()
    out = []
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        personas = await asyncio.to_thread(_write_personas, tb, tmp)
        fay = Fay(test_settings(tmp / "data", personas_dir=personas, default_persona="head3d",
                                webrtc={"host_addresses": ["127.0.0.1"], "remote_networks": ["127.0.0.0/8"]}))
        app = create_app(fay)
        app.router.add_static("/shared-data/", str(tb.ROOT.parent / "shared" / "data"))
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        await asyncio.to_thread(fay.plugins.engine("tts", "piper").load)
        try:
            for pid, (r, _) in tb.RENDERERS.items():
                for n in range(rounds):
                    res = await tb.drive(str(server.make_url("/")), pid, tmp)
                    sync = res.get("sync") or {}
                    m = av_offset(res["audio"], res["mouth"], open_at=0.03 if r == "video2d" else 0.25)
                    video = res.get("video") or {}
                    out.append({
                        "persona": pid, "renderer": r, "round": n, "offset_ms": m.offset_ms,
                        "correlation": m.correlation, "mouth_moves": m.mouth_moves,
                        "mouth_in_silence": m.mouth_in_silence, "draw_fps": res.get("drawFps"),
                        "audio_delay_ms": res.get("delayMs") or video.get("audioDelayMs"),
                        "stats_delay_ms": sync.get("statsDelayMs"), "locked": sync.get("locked"),
                        "video_jitter_target_ms": video.get("targetMs"),
                    })
        finally:
            await server.close()
    return out


def _write_personas(tb: Any, tmp: Path) -> Path:
    personas = tmp / "personas"
    personas.mkdir()
    for pid, (r, model) in tb.RENDERERS.items():
        (personas / f"{pid}.yaml").write_text(tb.persona(r, model))
    return personas


def table(rows: list[dict[str, Any]], cols: list[tuple[str, str, str]]) -> str:
    head = " | ".join(h for h, _, _ in cols)
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(" | ".join(format(r.get(k, ""), f) if isinstance(r.get(k), float | int) else str(r.get(k, "-"))
                                for _, k, f in cols))
    return "\n".join(lines)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="offline animation per renderer")
    ap.add_argument("--live-seconds", type=float, default=10.0)
    ap.add_argument("--sessions", type=int, default=10, help="concurrent live sessions per renderer")
    ap.add_argument("--browser", action="store_true", help="also measure the A/V offset in headless Chromium")
    ap.add_argument("--rounds", type=int, default=1, help="browser answers per renderer")
    args = ap.parse_args()

    clips = await asyncio.to_thread(speech)
    rs = renderers()
    offline_rows = [offline(n, r, clips, args.seconds) for n, r in rs.items()]
    live_rows = [await live(n, r, clips, args.sessions, args.live_seconds) for n, r in rs.items()]
    browser_rows = await browser(args.rounds) if args.browser else []

    result = {
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
                    "cores": os.cpu_count(), "load_avg": os.getloadavg()},
        "offline": offline_rows, "live": live_rows, "browser": browser_rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "avatar.json").write_text(json.dumps(result, indent=2))
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
    print("stream size and renderer CPU per session (offline, one thread)")
    rows = [{**r, "kbps": r.get("bytes_per_s", r.get("vp8_bytes_per_s", 0)) * 8 / 1000,
             "cpu_ms": r["cpu_per_s"] * 1000} for r in offline_rows]
    print(table(rows, [
        ("renderer", "renderer", ""), ("fps", "fps", ".0f"), ("bytes/s", "bytes_per_s", ".0f"),
        ("frame B", "frame_bytes", ".0f"), ("VP8 bytes/s", "vp8_bytes_per_s", ".0f"),
        ("H264 bytes/s", "h264_bytes_per_s", ".0f"), ("kbit/s", "kbps", ".1f"),
        ("CPU ms/s", "cpu_ms", ".2f"), ("sessions/core", "sessions_per_core", ".0f"),
        ("+VP8 sessions/core", "sessions_per_core_with_encode", ".0f"),
    ]))
    for r in offline_rows:
        print(f"  {r['renderer']}: renderer CPU {r['cpu_per_s'] * 1000:.2f} ms per second of animation"
              + (f", with VP8 encode {r['cpu_per_s_with_encode'] * 1000:.1f} ms/s" if "cpu_per_s_with_encode" in r
                 else ""))
    print(f"\nlive: {args.sessions} sessions per renderer on one event loop, {args.live_seconds:g} s")
    print(table(live_rows, [("renderer", "renderer", ""), ("frames", "frames", "d"),
                            ("gap p50 ms", "gap_ms_p50", ".1f"), ("gap p99 ms", "gap_ms_p99", ".1f"),
                            ("gap max ms", "gap_ms_max", ".1f"),
                            ("process CPU s/s", "process_cpu_per_s_all_sessions", ".2f")]))
    if browser_rows:
        print("\nA/V offset at the client (headless Chromium; + = mouth late)")
        print(table(browser_rows, [("persona", "persona", ""), ("renderer", "renderer", ""),
                                   ("offset ms", "offset_ms", ".0f"),
                                   ("corr", "correlation", ".2f"), ("draw fps", "draw_fps", ".1f"),
                                   ("audio delay ms", "audio_delay_ms", ".0f")]))
    print(f"\nwrote {RESULTS / 'avatar.json'}")


if __name__ == "__main__":
    asyncio.run(main())
