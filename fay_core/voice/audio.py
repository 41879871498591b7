"""PCM helpers for the voice pipeline: conversions, resampling, files, frames.

Audio inside Fay is 16-bit little-endian mono PCM (``bytes``): 16 kHz towards VAD and ASR, 48 kHz out of the
playout clock. Conversions here are numpy-only and allocate once per call, not per sample.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

#: microphone audio rate (VAD and ASR)
IN_RATE = 16000
#: playout rate (what WebRTC sends, so no resampling there)
OUT_RATE = 48000


def pcm_to_float(pcm: bytes | bytearray | memoryview) -> np.ndarray:
    """16-bit PCM to float32 samples in [-1, 1]."""
    return np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0


def float_to_pcm(samples: np.ndarray) -> bytes:
    """Float samples in [-1, 1] to 16-bit PCM (clipped)."""
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16).tobytes()


def resample(pcm: bytes, src_rate: int, dst_rate: int) -> bytes:
    """Resample a whole 16-bit mono buffer (band-limited when downsampling; linear interpolation otherwise).

    Good enough for speech between 8 and 48 kHz; a TTS sentence is resampled in one call, so there are no
    chunk-boundary artefacts.
    """
    if src_rate == dst_rate or not pcm:
        return pcm
    x = np.frombuffer(pcm, dtype=np.int16).astype(np.float32)
    if dst_rate < src_rate:
        # simple windowed-sinc low-pass at the new Nyquist before decimating
        cutoff = dst_rate / src_rate / 2
        taps = 31
        n = np.arange(taps) - (taps - 1) / 2
        h = 2 * cutoff * np.sinc(2 * cutoff * n) * np.hamming(taps)
        x = np.convolve(x, h / h.sum(), mode="same")
    n_out = int(round(len(x) * dst_rate / src_rate))
    t = np.arange(n_out, dtype=np.float64) * (src_rate / dst_rate)
    y = np.interp(t, np.arange(len(x), dtype=np.float64), x)
    return np.clip(y, -32768, 32767).astype(np.int16).tobytes()


def load_audio(path: str | Path, sample_rate: int = IN_RATE) -> bytes:
    """Decode any audio file ffmpeg reads (wav, flac, mp3, ...) to 16-bit mono PCM at ``sample_rate``."""
    import av  # lazy: only files need it

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no audio file at {path}")
    out = bytearray()
    resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            for res in resampler.resample(frame):
                out += res.to_ndarray().tobytes()
        for res in resampler.resample(None):
            out += res.to_ndarray().tobytes()
    return bytes(out)


def wav_to_pcm(data: bytes) -> tuple[bytes, int]:
    """The PCM and sample rate of an in-memory 16-bit mono WAV file (what ``espeak-ng --stdout`` writes)."""
    import io
    import wave

    with wave.open(io.BytesIO(data), "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise ValueError(f"expected 16-bit mono WAV, got {w.getsampwidth() * 8}-bit x{w.getnchannels()}")
        frames = w.getnframes()
        # espeak-ng writes 0x7fffffff as the length when streaming to stdout: read what is there
        pcm = w.readframes(frames if 0 < frames < 0x7FFFFFF0 else 1 << 30)
        return pcm, w.getframerate()


def frames(pcm: bytes, sample_rate: int = IN_RATE, ms: int = 20) -> Iterator[bytes]:
    """Split ``pcm`` into ``ms``-long frames (the last one zero-padded), as a microphone delivers them."""
    size = sample_rate * ms // 1000 * 2
    for i in range(0, len(pcm), size):
        chunk = pcm[i : i + size]
        yield chunk if len(chunk) == size else chunk + bytes(size - len(chunk))


def silence(ms: float, sample_rate: int = IN_RATE) -> bytes:
    """``ms`` of digital silence."""
    return bytes(int(sample_rate * ms / 1000) * 2)


def voiced_span(pcm: bytes, sample_rate: int, threshold_db: float = -40.0) -> tuple[int, int]:
    """Sample indices (start, end) of the part of ``pcm`` louder than ``threshold_db`` below its peak."""
    x = np.frombuffer(pcm, dtype=np.int16).astype(np.float32)
    if x.size == 0:
        return 0, 0
    win = max(1, sample_rate // 100)  # 10 ms
    n = x.size // win
    if n == 0:
        return 0, x.size
    rms = np.sqrt(np.mean(x[: n * win].reshape(n, win) ** 2, axis=1) + 1e-9)
    loud = np.nonzero(rms > rms.max() * 10 ** (threshold_db / 20))[0]
    if loud.size == 0:
        return 0, x.size
    return int(loud[0] * win), int(min(x.size, (loud[-1] + 1) * win))


async def stream_pcm(bus: Any, pcm: bytes, *, realtime: bool = True, frame_ms: int = 20) -> None:
    """Publish ``pcm`` (16 kHz mono) on ``bus`` as ``AudioReceived`` frames, paced in real time like a microphone.

    For tests and benchmarks; the WebRTC transport does the same with a peer's audio track.
    """
    import asyncio
    import time

    from ..events import AudioReceived

    period = frame_ms / 1000
    t0 = time.monotonic()
    for i, frame in enumerate(frames(pcm, IN_RATE, frame_ms)):
        if realtime:
            delay = t0 + i * period - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        bus.publish(AudioReceived(session_id=bus.session_id, pcm=frame, sample_rate=IN_RATE, pts=i * period))
        if not realtime and i % 10 == 0:
            await asyncio.sleep(0)
