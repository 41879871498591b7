"""Built-in plugin: Microsoft Edge's online neural voices through ``edge-tts`` (``voice.engine: edge``).

Registered as online, with the highest priority: ``voice.engine: auto`` speaks with it first when
``voice.tts.online`` allows and :meth:`EdgeTTS.reachable` (``plugins.edge.probe_host`` resolves) says the
service is there. Needs the internet (``speech.platform.bing.com``). Word timings come from the service's word
boundaries. When the service cannot be reached the engine fails at once with a clear message, and the persona's
``voice.fallback`` engines speak instead. ``plugins.edge.proxy`` routes it through an HTTP proxy.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import AsyncIterator
from importlib.util import find_spec

from pydantic import BaseModel, ConfigDict, Field

from fay_core import hookimpl
from fay_core.engines import AudioChunk
from fay_core.errors import EngineError, EngineUnavailable
from fay_core.events import WordTiming
from fay_core.hookspecs import RegisterEngine, RegisterSettings

_VOICE = re.compile(r"[a-z]{2,3}-[A-Z]{2}(-\w+)?-\w+Neural")
OUT_RATE = 24000  # the service's mp3 is 24 kHz mono


class EdgeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    voices: dict[str, str] = Field(
        default_factory=lambda: {"en": "en-US-AriaNeural", "zh": "zh-CN-XiaoxiaoNeural"},
        description="default voice per persona language",
    )
    proxy: str | None = Field(None, description="HTTP proxy URL, e.g. http://proxy.bank.example:3128")
    connect_timeout_s: int = Field(5, ge=1, le=60)
    receive_timeout_s: int = Field(20, ge=1, le=300)
    probe_host: str = Field("speech.platform.bing.com", description="resolved to decide whether we are online")
    probe_timeout_s: float = Field(1.0, gt=0, le=10, description="how long that lookup may take")


# --- reachability of the service ------------------------------------------------------------------------

_reachable: dict[str, tuple[float, bool]] = {}


async def host_reachable(host: str, wait_s: float = 1.0, ttl: float = 300.0) -> bool:
    """Whether ``host`` resolves within ``wait_s`` seconds (cached for ``ttl`` seconds). Never raises."""
    now = time.monotonic()
    cached = _reachable.get(host)
    if cached and now - cached[0] < ttl:
        return cached[1]
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.getaddrinfo(host, 443, type=socket.SOCK_STREAM), wait_s)
        ok = True
    except (TimeoutError, OSError):
        ok = False
    _reachable[host] = (now, ok)
    return ok


class EdgeTTS:
    """Streams mp3 from the Edge read-aloud service and decodes it to PCM."""

    name = "edge"

    def __init__(self, settings: EdgeSettings | None = None) -> None:
        if find_spec("edge_tts") is None:
            raise EngineUnavailable("edge-tts is not installed: pip install edge-tts")
        self.settings = settings or EdgeSettings()

    def accepts_voice(self, voice: str) -> bool:
        return bool(_VOICE.fullmatch(voice))

    async def reachable(self) -> bool:
        """Whether the service's host (``probe_host``) resolves. Cached for a few minutes; never raises."""
        return await host_reachable(self.settings.probe_host, self.settings.probe_timeout_s)

    async def synthesize(
        self, text: str, *, voice: str | None = None, language: str = "en", rate: float = 1.0
    ) -> AsyncIterator[AudioChunk]:
        import aiohttp
        import av
        import edge_tts

        s = self.settings
        name = voice or s.voices.get(language) or s.voices["en"]
        communicate = edge_tts.Communicate(
            text, name, rate=f"{round((rate - 1) * 100):+d}%", boundary="WordBoundary", proxy=s.proxy,
            connect_timeout=s.connect_timeout_s, receive_timeout=s.receive_timeout_s,
        )
        decoder = av.CodecContext.create("mp3", "r")
        resampler = av.AudioResampler(format="s16", layout="mono", rate=OUT_RATE)
        pcm = bytearray()
        words: list[WordTiming] = []

        def decode(data: bytes | None) -> None:
            for packet in decoder.parse(data) if data is not None else [None]:
                for frame in decoder.decode(packet):
                    for out in resampler.resample(frame):
                        pcm.extend(out.to_ndarray().tobytes())

        try:
            async for message in communicate.stream():
                if message["type"] == "audio":
                    decode(message["data"])
                elif message["type"] == "WordBoundary":
                    start = message["offset"] / 10_000  # 100 ns units
                    words.append(WordTiming(message["text"], start, start + message["duration"] / 10_000))
        except aiohttp.ClientConnectorError as exc:
            raise EngineError(
                f"edge-tts cannot reach the Edge speech service ({exc.os_error or exc}): this machine looks "
                "offline; use an offline voice (voice.engine: piper or espeak) or list one in voice.fallback"
            ) from None
        except (aiohttp.ClientError, TimeoutError, edge_tts.exceptions.EdgeTTSException) as exc:
            raise EngineError(f"edge-tts failed: {type(exc).__name__}: {exc}") from None
        decode(None)
        if not pcm:
            raise EngineError("edge-tts returned no audio")
        yield AudioChunk(bytes(pcm), OUT_RATE, tuple(words), text)


@hookimpl
def register_settings(register: RegisterSettings) -> None:
    register("edge", EdgeSettings)


@hookimpl
def register_tts_engines(register: RegisterEngine) -> None:
    register("edge", EdgeTTS, settings="edge", online=True, priority=100)  # neural voices for every language
