"""Text to speech for a session: engine choice, fallback, and word timings.

- :func:`estimate_words` spreads a chunk's words over its voiced audio by their length (for engines that give no
  word timings: piper, espeak-ng). Latin words are split on spaces, Chinese text per character.
- :class:`Speaker` speaks for one session: it resolves the persona's ``voice.engine`` (``auto`` picks an offline
  engine for the persona's language, or the online one first when ``voice.tts.online`` allows it), tries the
  ``voice.fallback`` engines in order when one fails, reports each failure as ``ErrorRaised``, and rests a failed
  engine for a while so that every sentence does not pay for the same failure again.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ..engines import AudioChunk
from ..errors import EngineError, FayError
from ..events import ErrorRaised, WordTiming
from .audio import voiced_span

if TYPE_CHECKING:
    from ..bus import Bus
    from ..persona import Persona
    from ..plugins import Plugins
    from ..settings import VoiceSettings

log = logging.getLogger(__name__)

_TOKEN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff][^\w\u3400-\u9fff\s]*|[^\s\u3400-\u9fff]+")

#: offline engines that speak each language well enough, best first
OFFLINE_ENGINES = {"en": ("piper", "espeak"), "zh": ("espeak",), "auto": ("piper", "espeak")}
ONLINE_ENGINE = "edge"


def split_words(text: str) -> list[str]:
    """The words of ``text`` as speech timings name them: Latin words with their punctuation, CJK per character."""
    return _TOKEN.findall(text)


def estimate_words(text: str, pcm: bytes, sample_rate: int) -> tuple[WordTiming, ...]:
    """Word timings for ``text`` spoken in ``pcm``, spread over its voiced span by word length (+ pauses)."""
    words = split_words(text)
    if not words:
        return ()
    start, end = voiced_span(pcm, sample_rate)
    start_ms, end_ms = start * 1000 / sample_rate, end * 1000 / sample_rate
    weights = []
    for w in words:
        core = sum(1 for c in w if c.isalnum())
        pause = 2.0 if w[-1] in ",;:，、；：" else 3.0 if w[-1] in ".!?。！？" else 0.0
        cjk = any("\u3400" <= c <= "\u9fff" for c in w)
        weights.append((3.0 if cjk else max(1.0, core) + 1.0, pause))
    total = sum(a + b for a, b in weights) or 1.0
    scale = (end_ms - start_ms) / total
    out = []
    t = start_ms
    for w, (a, b) in zip(words, weights, strict=True):
        out.append(WordTiming(w, round(t, 1), round(t + a * scale, 1)))
        t += (a + b) * scale
    return tuple(out)


# --- reachability of the online engine -----------------------------------------------------------------

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


# --- the per-session speaker ----------------------------------------------------------------------------


class Speaker:
    """Synthesizes a session's sentences with the persona's engine and its fallbacks."""

    def __init__(self, bus: Bus, persona: Persona, settings: VoiceSettings, plugins: Plugins) -> None:
        self.bus = bus
        self.plugins = plugins
        self.settings = settings
        self.persona = persona
        self.language = self.persona.language if self.persona.language != "auto" else "en"
        self._resting: dict[str, float] = {}  # engine -> monotonic time until which it is skipped
        self._chain: list[str] | None = None
        self.used: list[str] = []  # engine that spoke each sentence (for tests and the audit)

    async def chain(self) -> list[str]:
        """The engines to try, in order (resolved once per session)."""
        if self._chain is None:
            plugins = self.plugins
            known = set(plugins.names("tts"))
            voice = self.persona.voice
            first: list[str] = []
            if voice.engine == "auto":
                online = self.settings.tts.online
                if online == "always" or (
                    online == "auto" and ONLINE_ENGINE in known
                    and await host_reachable(self.settings.tts.online_host, self.settings.tts.probe_timeout_s)
                ):
                    first.append(ONLINE_ENGINE)
                first += [e for e in OFFLINE_ENGINES.get(self.language, ()) if e in known]
            else:
                first.append(voice.engine)
            chain: list[str] = []
            for name in [*first, *voice.fallback]:
                if name not in chain and name != "auto":
                    chain.append(name)
            self._chain = chain
            if not chain:
                raise EngineError(f"no TTS engine is installed for language {self.language!r} (registered: "
                                  f"{', '.join(sorted(known)) or 'none'}); install piper-tts or espeak-ng")
        return self._chain

    async def warm_up(self) -> None:
        """Load the first engine's voice now (engines that can: ``warm_up``), so the first answer is not slower."""
        chain = await self.chain()
        engine = self.plugins.engine("tts", chain[0])
        warm = getattr(engine, "warm_up", None)
        if warm is not None:
            await warm(self._voice_for(engine))

    def _voice_for(self, engine: Any) -> str | None:
        """The persona's voice name if the engine accepts it, else ``None`` (the engine's default)."""
        name = self.persona.voice.name
        accepts = getattr(engine, "accepts_voice", None)
        if name and accepts is not None and not accepts(name):
            return None
        return name

    async def speak(self, text: str, turn_id: int) -> AsyncIterator[AudioChunk]:
        """Yield audio for ``text``; falls back along the chain. Raises :class:`EngineError` if every engine fails."""
        plugins = self.plugins
        errors: list[str] = []
        now = time.monotonic()
        chain = await self.chain()
        candidates = [n for n in chain if self._resting.get(n, 0.0) <= now] or chain[-1:]
        for name in candidates:
            yielded = False
            try:
                engine = plugins.engine("tts", name)
                async for chunk in engine.synthesize(
                    text, voice=self._voice_for(engine), language=self.language, rate=self.persona.voice.rate
                ):
                    if not chunk.words and chunk.pcm:
                        chunk = AudioChunk(chunk.pcm, chunk.sample_rate, estimate_words(chunk.text or text, chunk.pcm,
                                           chunk.sample_rate), chunk.text or text)
                    yielded = True
                    yield chunk
                self.used.append(name)
                return
            except (asyncio.CancelledError, GeneratorExit):
                raise
            except Exception as exc:
                msg = str(exc) if isinstance(exc, FayError) else f"{type(exc).__name__}: {exc}"
                errors.append(f"{name}: {msg}")
                self._resting[name] = time.monotonic() + self.settings.tts.rest_failed_s
                log.warning("session %s: TTS engine %s failed: %s", self.bus.session_id, name, msg)
                self.bus.publish(
                    ErrorRaised(session_id=self.bus.session_id, turn_id=turn_id, source=f"tts.{name}", message=msg,
                                error_type=type(exc).__name__)
                )
                if yielded:  # part of the sentence was heard: do not start it again with another voice
                    return
        raise EngineError("every TTS engine failed: " + "; ".join(errors))
