"""Camera benchmark: what a camera session costs, how fast a visitor is noticed, and what it costs the voice.

Scenarios (the visitor is scikit-image's public-domain ``astronaut()``, moved by :mod:`fay_core.vision.scenes`):

- **CPU per session-second**: a 640x480 VP8 stream at ``--camera-fps`` (encoded here with libvpx, as a browser
  sends it) is decoded frame by frame (what aiortc does for every frame it receives), ``--fps`` of those frames
  are scaled (:func:`~fay_core.transport.tracks.frame_image`) and looked at by the ``opencv`` processor. CPU
  seconds (this process, all threads) per second of video, and the sessions one core could carry.
- **UserArrived latency**: a camera track delivering frames in real time, an empty room, then the visitor;
  the time from the first frame with the face to ``UserArrived`` (``arrive_s`` of hysteresis included).
- **The voice path**: a paced microphone track through ``pump_audio`` (20 ms frames), alone and next to
  ``--sessions`` camera sessions on the same event loop; how late each ``AudioReceived`` is delivered after its
  frame was due (p50/p99/max).

Prints a table and writes ``bench/results/vision.json``.

    python bench/vision.py [--seconds 10] [--fps 2] [--camera-fps 15] [--sessions 4] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "plugins"))

import fay_opencv  # noqa: E402
from fay_core.bus import Bus  # noqa: E402
from fay_core.events import AudioReceived, UserArrived  # noqa: E402
from fay_core.persona import VisionConfig  # noqa: E402
from fay_core.transport.tracks import frame_image, pump_audio, pump_video  # noqa: E402
from fay_core.vision import VisionWatcher, scenes  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def vp8_stream(seconds: float, fps: int) -> list[av.Packet]:
    """The visitor's walk as VP8 packets (about 500 kbit/s, like a browser's camera at this size)."""
    enc = av.CodecContext.create("libvpx", "w")
    enc.width, enc.height, enc.pix_fmt = scenes.WIDTH, scenes.HEIGHT, "yuv420p"
    enc.time_base = fractions.Fraction(1, fps)
    enc.bit_rate = 500_000
    packets: list[av.Packet] = []
    walk = scenes.walk(fps, lead_s=seconds * 0.2, left_s=seconds * 0.3, right_s=seconds * 0.3, empty_s=seconds * 0.2)
    for i, (_, bgr) in enumerate(walk):
        frame = av.VideoFrame.from_ndarray(bgr, format="bgr24").reformat(format="yuv420p")
        frame.pts = i
        packets.extend(enc.encode(frame))
    packets.extend(enc.encode(None))
    return packets


def cpu_per_second(processor: fay_opencv.HaarFaces, seconds: float, camera_fps: int, fps: float) -> dict[str, float]:
    packets = vp8_stream(seconds, camera_fps)
    dec = av.CodecContext.create("vp8", "r")
    decode = convert = detect = 0.0
    looked = faces = 0
    every = max(1, round(camera_fps / fps))
    for i, packet in enumerate(packets):
        t0 = time.process_time()
        frames = dec.decode(packet)
        decode += time.process_time() - t0
        for frame in frames:
            if i % every:
                continue
            t1 = time.process_time()
            image = frame_image(frame)
            t2 = time.process_time()
            faces += bool(processor.faces(image))
            t3 = time.process_time()
            convert += t2 - t1
            detect += t3 - t2
            looked += 1
    total = decode + convert + detect
    return {"video_s": seconds, "frames": len(packets), "looked_at": looked, "with_face": faces,
            "decode_ms_per_s": decode / seconds * 1000, "convert_ms_per_s": convert / seconds * 1000,
            "detect_ms_per_s": detect / seconds * 1000, "total_ms_per_s": total / seconds * 1000,
            "detect_ms_per_frame": detect / max(1, looked) * 1000, "sessions_per_core": seconds / total}


class Camera(MediaStreamTrack):
    """Decoded 640x480 frames in real time at ``fps``: an empty room until ``face_at_s``, then the visitor."""

    kind = "video"

    def __init__(self, fps: int, face_at_s: float | None, seconds: float) -> None:
        super().__init__()
        self.fps, self.face_at_s, self.seconds = fps, face_at_s, seconds
        self.empty = av.VideoFrame.from_ndarray(scenes.frame(None), format="bgr24").reformat(format="yuv420p")
        self.face = av.VideoFrame.from_ndarray(scenes.frame(0.0), format="bgr24").reformat(format="yuv420p")
        self.n = 0
        self.t0: float | None = None
        self.first_face_at: float | None = None

    async def recv(self) -> Any:
        loop = asyncio.get_running_loop()
        self.t0 = self.t0 if self.t0 is not None else loop.time()
        t = self.n / self.fps
        if t >= self.seconds:
            raise MediaStreamError
        await asyncio.sleep(max(0.0, self.t0 + t - loop.time()))
        face = self.face_at_s is not None and t >= self.face_at_s
        if face and self.first_face_at is None:
            self.first_face_at = time.monotonic()
        frame = self.face if face else self.empty
        frame.pts, frame.time_base = self.n, fractions.Fraction(1, self.fps)
        self.n += 1
        return frame


async def arrival_latency(processor: fay_opencv.HaarFaces, camera_fps: int, fps: float, repeats: int
                          ) -> dict[str, float]:
    out: list[float] = []
    config = VisionConfig(enabled=True, fps=fps)
    for i in range(repeats):
        bus = Bus(f"arrive{i}")
        watcher = VisionWatcher(bus, config, processor)
        watcher.start()
        arrived: list[float] = []
        bus.subscribe(lambda e, got=arrived: got.append(time.monotonic()), UserArrived, name="bench.arrived")
        camera = Camera(camera_fps, 1.0 + i * 0.137, 1.0 + i * 0.137 + config.arrive_s + 2.5)
        await pump_video(camera, bus, fps)
        await bus.idle()
        if arrived and camera.first_face_at is not None:
            out.append((arrived[0] - camera.first_face_at) * 1000)
        await watcher.stop()
        await bus.close()
    return {"arrive_s": config.arrive_s, "runs": len(out), "p50_ms": _pct(out, 0.5), "max_ms": max(out, default=0)}


class Microphone(MediaStreamTrack):
    """``seconds`` of 20 ms 48 kHz stereo frames, paced in real time (frame n at ``t0 + n * 20 ms``)."""

    kind = "audio"

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.frames = int(seconds * 50)
        self.n = 0
        self.t0: float | None = None
        self.pcm = np.zeros((1, 1920), dtype=np.int16)

    async def recv(self) -> av.AudioFrame:
        if self.n >= self.frames:
            raise MediaStreamError
        self.t0 = self.t0 if self.t0 is not None else time.monotonic()
        await asyncio.sleep(max(0.0, self.t0 + self.n * 0.02 - time.monotonic()))
        frame = av.AudioFrame.from_ndarray(self.pcm, format="s16", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = 48000, self.n * 960, fractions.Fraction(1, 48000)
        self.n += 1
        return frame


async def voice_delay(processor: fay_opencv.HaarFaces, sessions: int, seconds: float, camera_fps: int,
                      fps: float) -> dict[str, float]:
    """How late microphone frames reach the bus with ``sessions`` camera sessions on the same loop."""
    bus = Bus("voice")
    mic = Microphone(seconds)
    late: list[float] = []

    def on_audio(e: AudioReceived) -> None:
        assert mic.t0 is not None
        due = mic.t0 + e.pts  # the source hands frame n over at t0 + n * 20 ms
        late.append((time.monotonic() - due) * 1000)

    bus.subscribe(on_audio, AudioReceived, name="bench.audio")
    cams: list[tuple[Bus, VisionWatcher]] = []
    tasks = []
    for i in range(sessions):
        cbus = Bus(f"cam{i}")
        watcher = VisionWatcher(cbus, VisionConfig(enabled=True, fps=fps), processor)
        watcher.start()
        cams.append((cbus, watcher))
        tasks.append(cbus.spawn(pump_video(Camera(camera_fps, 0.5, seconds), cbus, fps)))
    cpu0 = time.process_time()
    await pump_audio(mic, bus)
    cpu = time.process_time() - cpu0
    await asyncio.gather(*tasks, return_exceptions=True)
    for cbus, watcher in cams:
        await watcher.stop()
        await cbus.close()
    await bus.close()
    return {"camera_sessions": sessions, "frames": len(late), "p50_ms": _pct(late, 0.5), "p99_ms": _pct(late, 0.99),
            "max_ms": max(late, default=0.0), "cpu_s_per_s": cpu / seconds}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    processor = fay_opencv.HaarFaces()
    processor.faces(scenes.frame(0.0))  # load the cascade
    cpu = await asyncio.to_thread(cpu_per_second, processor, args.seconds, args.camera_fps, args.fps)
    arrival = await arrival_latency(processor, args.camera_fps, args.fps, args.repeats)
    voice = [await voice_delay(processor, n, args.seconds / 2, args.camera_fps, args.fps)
             for n in (0, args.sessions)]
    return {"python": platform.python_version(), "fps": args.fps, "camera_fps": args.camera_fps, "cpu": cpu,
            "arrival": arrival, "voice": voice}


def report(r: dict[str, Any]) -> None:
    c, a = r["cpu"], r["arrival"]
    print(f"camera benchmark ({r['camera_fps']} fps 640x480 VP8 in, {r['fps']:g} fps looked at; python {r['python']})")
    print(f"{'CPU per session-second':34} decode {c['decode_ms_per_s']:.0f} ms + scale {c['convert_ms_per_s']:.1f} ms "
          f"+ detect {c['detect_ms_per_s']:.0f} ms = {c['total_ms_per_s']:.0f} ms "
          f"({c['detect_ms_per_frame']:.0f} ms a frame; {c['sessions_per_core']:.1f} sessions a core)")
    print(f"{'face appears -> UserArrived':34} p50 {a['p50_ms']:.0f} ms, max {a['max_ms']:.0f} ms over "
          f"{a['runs']} runs (arrive_s {a['arrive_s']:g} s of it)")
    for v in r["voice"]:
        print(f"{'mic frame delay, ' + str(v['camera_sessions']) + ' camera session(s)':34} p50 {v['p50_ms']:.1f} ms, "
              f"p99 {v['p99_ms']:.1f} ms, max {v['max_ms']:.1f} ms ({v['frames']} frames; "
              f"process CPU {v['cpu_s_per_s']:.2f} s/s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fps", type=float, default=2.0)
    parser.add_argument("--camera-fps", type=int, default=15)
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    result = asyncio.run(main(parser.parse_args()))
    report(result)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "vision.json").write_text(json.dumps(result, indent=2))
    print(f"wrote {RESULTS / 'vision.json'}")
