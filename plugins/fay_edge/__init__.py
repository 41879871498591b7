"""Built-in plugin: Microsoft Edge's online neural voices through ``edge-tts`` (``voice.engine: edge``).

Needs the internet (``speech.platform.bing.com``). Word timings come from the service's word boundaries. When
the service cannot be reached the engine fails at once with a clear message, and the persona's
``voice.fallback`` engines speak instead. ``plugins.edge.proxy`` routes it through an HTTP proxy.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from pydantic import BaseModel, ConfigDict, Field

from fay_core import hookimpl
from fay_core.engines import AudioChunk
from fay_core.errors import EngineError
from fay_core.events import WordTiming

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


class EdgeTTS:
    """Streams mp3 from the Edge read-aloud service and decodes it to PCM."""

    name = "edge"

    def __init__(self, settings: EdgeSettings | None = None) -> None:
        self.settings = settings or EdgeSettings()

    def accepts_voice(self, name: str) -> bool:
        return bool(_VOICE.fullmatch(name))

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
def register_settings(register):  # type: ignore[no-untyped-def]
    register("edge", EdgeSettings)


@hookimpl
def register_tts_engines(register):  # type: ignore[no-untyped-def]
    register("edge", EdgeTTS, settings="edge")
