"""A Python WebRTC client for Fay: what the web client does, for kiosks, load tests and the test suite.

``FayClient`` posts an offer to ``/api/webrtc/offer``, opens the ``fay`` data channel, sends a microphone track
(:class:`PCMSource`: recorded speech, paced in real time, then silence), and records what comes back: the JSON
messages (named as :mod:`fay_core.wire` names them: ``delta``, ``tool_called``, ``answer``, ...; in 0.2 the server also
sends ``tool``, a deprecated copy of each ``tool_called``, which this client records like any other message) and the
answer audio (with the time of the first audible frame). Example::

    async with FayClient("http://127.0.0.1:8000", persona="bank_teller_en", ice=settings.webrtc) as c:
        c.send_text("What is the savings rate?")
        answer = await c.wait_for("answer")
"""

from __future__ import annotations

import asyncio
import fractions
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ..settings import WebRTCSettings
from .ice import filter_candidates, networks, patient_consent, restrict_peer, rtc_configuration
from .protocol import CHANNEL_LABEL

FRAME_MS = 20


class OfferRefused(ConnectionError):
    """The server answered the offer with an error status; ``retry_after_s`` is its ``Retry-After`` (503 busy or
    full, 429 too many offers), else None."""

    def __init__(self, status: int, error: str, retry_after_s: float | None) -> None:
        super().__init__(f"offer refused ({status}): {error}")
        self.status = status
        self.error = error
        self.retry_after_s = retry_after_s


class PCMSource(MediaStreamTrack):
    """A microphone that plays queued 16-bit mono PCM in real time (20 ms frames), and silence in between."""

    kind = "audio"

    def __init__(self, sample_rate: int = 48000) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.frame_samples = sample_rate * FRAME_MS // 1000
        self._pending = bytearray()
        self._pts = 0
        self._start: float | None = None
        self._silence = bytes(self.frame_samples * 2)
        self.speech_ended_at: float | None = None  # monotonic time the last queued sample was sent
        self.speech_ended = asyncio.Event()
        self._ending = False

    def play(self, pcm: bytes, sample_rate: int) -> float:
        """Queue ``pcm`` (16-bit mono at ``sample_rate``); return its duration in seconds."""
        if sample_rate != self.sample_rate:
            pcm = resample(pcm, sample_rate, self.sample_rate)
        self._pending += pcm
        self._ending = True
        self.speech_ended_at = None
        self.speech_ended.clear()
        return len(pcm) / 2 / self.sample_rate

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        due = self._start + self._pts / self.sample_rate
        if due > now:
            await asyncio.sleep(due - now)
        n = self.frame_samples * 2
        if self._pending:
            chunk = bytes(self._pending[:n]).ljust(n, b"\0")
            del self._pending[:n]
        else:
            chunk = self._silence
            if self._ending:
                self._ending = False
                self.speech_ended_at = time.monotonic()
                self.speech_ended.set()
        frame = av.AudioFrame.from_ndarray(np.frombuffer(chunk, np.int16).reshape(1, -1), format="s16",
                                           layout="mono")
        frame.sample_rate = self.sample_rate
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, self.sample_rate)
        self._pts += self.frame_samples
        return frame


def resample(pcm: bytes, rate_in: int, rate_out: int) -> bytes:
    """16-bit mono PCM from ``rate_in`` to ``rate_out`` with PyAV's resampler."""
    frame = av.AudioFrame.from_ndarray(np.frombuffer(pcm, np.int16).reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate_in
    r = av.AudioResampler(format="s16", layout="mono", rate=rate_out)
    out = b"".join(f.to_ndarray().tobytes() for f in r.resample(frame))
    return out + b"".join(f.to_ndarray().tobytes() for f in r.resample(None))


class FayClient:
    """One client peer. Use as an async context manager (connects on enter, closes on exit)."""

    def __init__(
        self,
        base_url: str,
        *,
        persona: str | None = None,
        ice: WebRTCSettings | None = None,
        audio: bool = True,
        video: bool = False,
        camera: MediaStreamTrack | None = None,
        token: str | None = None,
        audible_rms: float = 300.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.persona = persona
        self.ice = ice or WebRTCSettings()
        self.audio = audio
        self.video = video
        self.camera = camera  #: a video track sent as the visitor's camera (one transceiver with the avatar's video)
        self.video_frames = 0
        self.last_video_frame: Any = None
        self.token = token
        self.audible_rms = audible_rms
        self.pc: RTCPeerConnection | None = None
        self.mic: PCMSource | None = None
        self.session_id = ""
        self.messages: list[dict[str, Any]] = []
        self.binary: list[bytes] = []
        self.audio_frames = 0
        self.first_audible_at: float | None = None  # monotonic time of the first frame above audible_rms
        self.audible = asyncio.Event()  # set with first_audible_at; cleared by say() and expect_audio()
        self.connect_s = 0.0  # offer made -> the server's "ready" message received
        self.ready: dict[str, Any] = {}
        self._channel: Any = None
        self._waiters: list[tuple[Callable[[dict[str, Any]], bool], asyncio.Future[dict[str, Any]]]] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._open = asyncio.Event()

    async def __aenter__(self) -> FayClient:
        try:
            await self.connect()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self, timeout_s: float = 20.0) -> None:
        """Offer, answer, and wait for the data channel's ``ready`` message."""
        started = time.monotonic()
        pc = self.pc = RTCPeerConnection(rtc_configuration(self.ice))
        channel = self._channel = pc.createDataChannel(CHANNEL_LABEL)
        channel.on("open", self._open.set)
        channel.on("message", self._on_message)
        if self.audio:
            self.mic = PCMSource()
            pc.addTrack(self.mic)
        if self.camera is not None:
            pc.addTrack(self.camera)
        elif self.video:
            pc.addTransceiver("video", direction="recvonly")
        pc.on("track", self._on_track)
        restrict_peer(pc, self.ice)
        patient_consent(pc)
        await pc.setLocalDescription(await pc.createOffer())
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        body = {"sdp": pc.localDescription.sdp, "type": "offer", "persona": self.persona}
        url = f"{self.base_url}/api/webrtc/offer"
        async with aiohttp.ClientSession() as http, http.post(url, json=body, headers=headers) as resp:
            data = await resp.json()
            if resp.status != 201:
                retry = resp.headers.get("Retry-After")
                raise OfferRefused(resp.status, str(data.get("error")), float(retry) if retry else None)
        self.session_id = data["session_id"]
        sdp, _ = filter_candidates(data["sdp"], networks(self.ice))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        self.ready = await self.wait_for("ready", timeout_s)
        self.connect_s = time.monotonic() - started

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._tasks.append(asyncio.ensure_future(self._listen(track)))
        elif track.kind == "video":
            self._tasks.append(asyncio.ensure_future(self._watch(track)))

    async def _watch(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                self.last_video_frame = await track.recv()
            except MediaStreamError:
                return
            self.video_frames += 1

    async def _listen(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.audio_frames += 1
            if self.first_audible_at is None and isinstance(frame, av.AudioFrame):
                samples = frame.to_ndarray().astype(np.float32)
                if float(np.sqrt(np.mean(samples * samples))) > self.audible_rms:
                    self.first_audible_at = time.monotonic()
                    self.audible.set()

    def _on_message(self, raw: str | bytes) -> None:
        if isinstance(raw, bytes):
            self.binary.append(raw)
            return
        msg = json.loads(raw)
        self.messages.append(msg)
        for pred, fut in list(self._waiters):
            if not fut.done() and pred(msg):
                fut.set_result(msg)
                self._waiters.remove((pred, fut))

    def send(self, message: dict[str, Any] | str | bytes) -> None:
        """Send a message as is (a dict is JSON-encoded)."""
        self._channel.send(json.dumps(message) if isinstance(message, dict) else message)

    def send_text(self, text: str) -> None:
        self.send({"type": "text", "text": text})

    def say(self, pcm: bytes, sample_rate: int) -> float:
        """Speak ``pcm`` into the microphone; returns its duration. Resets :attr:`first_audible_at`."""
        if self.mic is None:
            raise RuntimeError("this client has no microphone (audio=False)")
        self.expect_audio()
        return self.mic.play(pcm, sample_rate)

    def expect_audio(self) -> None:
        """Forget the answer audio heard so far: :attr:`audible` is set again by the next audible frame."""
        self.first_audible_at = None
        self.audible.clear()

    async def wait_for(self, type_: str, timeout_s: float = 30.0, **match: Any) -> dict[str, Any]:
        """The next message of ``type_`` whose fields equal ``match`` (earlier ones count too)."""

        def pred(m: dict[str, Any]) -> bool:
            return m.get("type") == type_ and all(m.get(k) == v for k, v in match.items())

        for m in self.messages:
            if pred(m):
                self.messages.remove(m)
                return m
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters.append((pred, fut))
        try:
            msg = await asyncio.wait_for(fut, timeout_s)
        finally:
            if (pred, fut) in self._waiters:
                self._waiters.remove((pred, fut))
        self.messages.remove(msg)
        return msg

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.mic is not None:
            self.mic.stop()
        if self.pc is not None:
            await self.pc.close()
