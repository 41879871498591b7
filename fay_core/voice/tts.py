"""Text to speech for a session: engine choice, fallback, and word timings.

- :func:`estimate_words` spreads a chunk's words over its voiced audio by their length (for engines that give no
  word timings of their own). Latin words are split on spaces, Chinese text per character.
- :class:`Speaker` speaks for one session: it resolves the persona's ``voice.engine`` (``auto``: the engines
  registered for the persona's language that can run here, by priority; online ones only when
  ``voice.tts.online`` allows and they say they are reachable), tries the ``voice.fallback`` engines in order when
  one fails, reports each failure as ``ErrorRaised``, and rests a failed engine for a while so that every
  sentence does not pay for the same failure again.
- The engine is given the sentence's spoken form (:mod:`fay_core.voice.speech_text`: ``¥2,000`` → 两千元 for
  ``zh``); the chunks it yields are told in the shown text (:func:`shown_chunk`): ``chunk.text`` is the sentence as
  the agent wrote it (captions, and the history of an interrupted turn) and the word timings name its words. The
  timings are measured on what was spoken (estimated over the spoken form's syllables) and a rewritten piece
  becomes one word spanning the syllables read from it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ..engines import AudioChunk, ChecksReachability, ChecksVoice, SupportsWarmUp
from ..errors import EngineError, EngineUnavailable
from ..events import ErrorRaised, WordTiming
from .audio import voiced_span
from .speech_text import SpeechText
from ..text import HAN, is_han

if TYPE_CHECKING:
    from ..bus import Bus
    from ..persona import Persona
    from ..plugins import Plugins
    from ..settings import VoiceSettings

log = logging.getLogger(__name__)

_TOKEN = re.compile(f"[{HAN}][^\\w{HAN}\\s]*|[^\\s{HAN}]+")


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
        cjk = any(is_han(c) for c in w)
        weights.append((3.0 if cjk else max(1.0, core) + 1.0, pause))
    total = sum(a + b for a, b in weights) or 1.0
    scale = (end_ms - start_ms) / total
    out = []
    t = start_ms
    for w, (a, b) in zip(words, weights, strict=True):
        out.append(WordTiming(w, round(t, 1), round(t + a * scale, 1)))
        t += (a + b) * scale
    return tuple(out)


def shown_chunk(chunk: AudioChunk, said: SpeechText, cursor: int = 0) -> tuple[AudioChunk, int]:
    """``chunk``, synthesized from ``said.spoken``, told in the shown text: its ``text`` is the part of
    ``said.shown`` it reads and its word timings (the engine's, else estimated on the spoken text, so that
    ``95999`` read as five syllables gets the time of five) name the shown words (``¥2,000`` for 两千元).

    ``cursor`` is where the chunk's text is looked for in the spoken text (an engine that streams a sentence in
    several chunks); the position after it is returned with the chunk.
    """
    spoken = chunk.text or said.spoken
    words = chunk.words
    if not words and chunk.pcm:
        words = estimate_words(spoken, chunk.pcm, chunk.sample_rate)
    if not said.rewrites:
        return AudioChunk(chunk.pcm, chunk.sample_rate, words, spoken), cursor
    start = said.spoken.find(spoken, cursor) if spoken != said.spoken else 0
    if start < 0:  # the engine says it read something else: show the whole sentence, keep its timings
        return AudioChunk(chunk.pcm, chunk.sample_rate, words, said.shown), cursor
    end = start + len(spoken)
    s0, s1 = said.shown_span(start, end)
    return AudioChunk(chunk.pcm, chunk.sample_rate, said.shown_words(words, start), said.shown[s0:s1]), end


def trim_chunk(chunk: AudioChunk, *, lead_ms: float | None = None, tail_ms: float | None = None) -> AudioChunk:
    """``chunk`` with its leading silence cut to at most ``lead_ms`` and its trailing silence to at most
    ``tail_ms`` (``None``: left as it is); its word timings move with the audio. Where a sentence is spoken in
    two pieces, this makes the seam the length of a pause inside a sentence rather than between two."""
    rate = chunk.sample_rate
    if not chunk.pcm or (lead_ms is None and tail_ms is None):
        return chunk
    n = len(chunk.pcm) // 2
    start, end = voiced_span(chunk.pcm, rate)
    if end <= start:
        return chunk
    first = max(0, start - int(lead_ms * rate / 1000)) if lead_ms is not None else 0
    last = min(n, end + int(tail_ms * rate / 1000)) if tail_ms is not None else n
    if first == 0 and last == n:
        return chunk
    shift = first * 1000 / rate
    limit = (last - first) * 1000 / rate

    def moved(ms: float) -> float:
        return round(min(limit, max(0.0, ms - shift)), 1)

    words = tuple(WordTiming(w.word, moved(w.start_ms), moved(w.end_ms)) for w in chunk.words)
    return AudioChunk(chunk.pcm[first * 2 : last * 2], rate, words, chunk.text)


# --- the per-session speaker ----------------------------------------------------------------------------


class Speaker:
    """Synthesizes a session's sentences with the persona's engine and its fallbacks."""

    def __init__(self, bus: Bus, persona: Persona, settings: VoiceSettings, plugins: Plugins) -> None:
        self.bus = bus
        self.persona = persona
        self.settings = settings
        self.plugins = plugins
        self.language = persona.language if persona.language != "auto" else "en"
        self._resting: dict[str, float] = {}  # engine -> monotonic time until which it is skipped
        self._chain: list[str] | None = None
        self.used: list[str] = []  # engine that spoke each sentence (for tests and the audit)

    async def chain(self) -> list[str]:
        """The engines to try, in order (resolved once per session)."""
        if self._chain is None:
            voice = self.persona.voice
            first = await self._auto() if voice.engine == "auto" else [voice.engine]
            chain: list[str] = []
            for name in [*first, *voice.fallback]:
                if name not in chain and name != "auto":
                    chain.append(name)
            self._chain = chain
            if not chain:
                known = ", ".join(self.plugins.names("tts")) or "none"
                raise EngineError(f"no TTS engine can speak language {self.language!r} here (registered: {known}): "
                                  "install one, e.g. pip install 'fay[offline]'")
        return self._chain

    async def _auto(self) -> list[str]:
        """``auto``: the candidates for the persona's language that can run here, best first.

        Online engines come in only when ``voice.tts.online`` is ``always``, or ``auto`` and they say they are
        reachable (:class:`~fay_core.engines.ChecksReachability`).
        """
        online = self.settings.tts.online
        names: list[str] = []
        for reg in self.plugins.candidates("tts", self.language, online=online != "never"):
            try:
                engine = self.plugins.engine("tts", reg.name)
            except EngineUnavailable as exc:
                log.info("session %s: TTS engine %s cannot run here: %s", self.bus.session_id, reg.name, exc)
                continue
            if reg.online and online == "auto" and isinstance(engine, ChecksReachability):
                try:
                    reachable = await engine.reachable()
                except Exception as exc:  # the protocol says it never raises; an engine that does is not there
                    log.warning("session %s: TTS engine %s: reachable() failed: %s", self.bus.session_id, reg.name, exc)
                    reachable = False
                if not reachable:
                    continue
            names.append(reg.name)
        return names

    async def warm_up(self) -> None:
        """Load the first engine's voice now (engines that can: :class:`~fay_core.engines.SupportsWarmUp`)."""
        chain = await self.chain()
        engine = self.plugins.engine("tts", chain[0])
        if isinstance(engine, SupportsWarmUp):
            await engine.warm_up()

    def _voice_for(self, engine: Any) -> str | None:
        """The persona's voice name if the engine accepts it, else ``None`` (the engine's default)."""
        name = self.persona.voice.name
        if name and isinstance(engine, ChecksVoice) and not engine.accepts_voice(name):
            return None
        return name

    async def speak(self, text: str, turn_id: int, *, continues: bool = False) -> AsyncIterator[AudioChunk]:
        """Yield audio for ``text``; falls back along the chain. Raises :class:`EngineError` if every engine fails.

        ``continues``: ``text`` is the first part of a sentence (its intonation should not fall at the end)."""
        errors: list[str] = []
        said = SpeechText.of(text, self.language)
        if continues:
            said = said.continued()
        now = time.monotonic()
        chain = await self.chain()
        candidates = [n for n in chain if self._resting.get(n, 0.0) <= now] or chain[-1:]
        for name in candidates:
            yielded = False
            try:
                engine = self.plugins.engine("tts", name)
                cursor = 0
                async for chunk in engine.synthesize(
                    said.spoken, voice=self._voice_for(engine), language=self.language, rate=self.persona.voice.rate
                ):
                    chunk, cursor = shown_chunk(chunk, said, cursor)
                    yielded = True
                    yield chunk
                self.used.append(name)
                return
            except (asyncio.CancelledError, GeneratorExit):
                raise
            except Exception as exc:
                event = ErrorRaised.of(exc, session_id=self.bus.session_id, source=f"tts.{name}", turn_id=turn_id)
                errors.append(f"{name}: {event.message}")
                self._resting[name] = time.monotonic() + self.settings.tts.rest_failed_s
                log.warning("session %s: TTS engine %s failed: %s", self.bus.session_id, name, event.message)
                self.bus.publish(event)
                if yielded:  # part of the sentence was heard: do not start it again with another voice
                    return
        raise EngineError("every TTS engine failed: " + "; ".join(errors))
