"""The turn gate: has the user finished, or only paused? A turn-end model decides when the VAD hears a pause.

Silence alone cuts off a customer who pauses mid-sentence ("I'd like to… transfer money to my son") and makes
a quick, complete question wait the whole silence. :class:`TurnGate` asks the session's
:class:`~fay_core.engines.TurnDetector` (``voice.turn.engine``; the built-in one is Smart Turn) at every pause
the :class:`~fay_core.voice.vad.Segmenter` reports, with the utterance so far::

    SpeechPaused ─► detector.end_of_turn(pcm) ─► p ≥ threshold(language)?
                         yes: the turn ends after complete_silence_ms of silence
                         no:  the pipeline keeps listening for up to max_pause_ms of silence

It fails open: with no detector (none registered, its model missing), a detector that raises, or one that
answers after the silence rule (``voice.vad.min_silence_ms``) has already ended the turn, the silence rule
decides, and the log says so once. A pause whose verdict is still being computed also ends by the silence rule.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..engines import SupportsWarmUp, TurnDetector
from ..errors import FayError
from .audio import IN_RATE
from .vad import Segmenter, SpeechEnd, SpeechPaused

if TYPE_CHECKING:
    from ..bus import Bus
    from ..plugins import Plugins
    from ..settings import TurnSettings

log = logging.getLogger(__name__)

_missing_warned: set[str] = set()  # one warning per process for a detector that cannot run here


@dataclass(frozen=True, slots=True)
class TurnVerdict:
    """What the detector said about one pause."""

    pause: int
    probability: float
    complete: bool
    ms: float  # how long the detector took
    applied: bool  # False: too late (the pause was over)


class TurnGate:
    """One session's turn gate, between its segmenter and its detector (``None``: the silence rule alone)."""

    def __init__(self, bus: Bus, segmenter: Segmenter, detector: TurnDetector | None, settings: TurnSettings,
                 language: str | None) -> None:
        self.bus = bus
        self.segmenter = segmenter
        self.detector = detector
        self.settings = settings
        self.language = language
        self.threshold = settings.threshold(language)
        self.verdicts: deque[TurnVerdict] = deque(maxlen=64)
        self.fallbacks = 0  # pauses the silence rule decided because the detector failed, was busy or slow
        self._task: asyncio.Task[None] | None = None
        self._ended_pause = -1
        self._warned = False

    @classmethod
    def create(cls, bus: Bus, segmenter: Segmenter, plugins: Plugins, settings: TurnSettings,
               language: str | None) -> TurnGate:
        """The gate with the detector ``settings.engine`` names (``auto``: the best that can run here)."""
        detector: TurnDetector | None = None
        if settings.engine != "none":
            try:
                detector = plugins.pick("turn", settings.engine, language)
            except FayError as exc:
                if settings.engine not in _missing_warned:
                    _missing_warned.add(settings.engine)
                    log.warning("no turn detector (%s): turns end by the silence rule (voice.vad.min_silence_ms)",
                                exc)
        return cls(bus, segmenter, detector, settings, language)

    async def warm_up(self) -> None:
        """Load the detector's model now; a failure makes the gate fall back (with its one warning)."""
        if isinstance(self.detector, SupportsWarmUp):
            try:
                await self.detector.warm_up()
            except Exception as exc:
                self._fall_back(f"could not load: {exc}")

    # --- fed by the pipeline ----------------------------------------------------------------------------

    def paused(self, ev: SpeechPaused, then: Callable[[], None] | None = None) -> None:
        """The VAD heard a pause: ask the detector (one question at a time per session), then call ``then()``.

        ``then`` (the early transcription) waits for the verdict so that the two do not compete for the CPU
        while the verdict's time is short; without a detector it is called at once.
        """
        if self.detector is None or (self._task is not None and not self._task.done()):
            if self.detector is not None:
                self.fallbacks += 1  # still judging an earlier pause: this one ends by the silence rule
            if then is not None:
                then()
            return
        self._task = self.bus.spawn(self._judge(self.detector, ev, then), name="voice.turn-gate")

    def ended(self, ev: SpeechEnd) -> None:
        """The utterance ended (by the gate's verdict, the silence rule or the length cap)."""
        self._ended_pause = self.segmenter.pauses

    async def _judge(self, detector: TurnDetector, ev: SpeechPaused, then: Callable[[], None] | None) -> None:
        t0 = time.monotonic()
        try:
            p = float(await detector.end_of_turn(ev.pcm, IN_RATE, language=self.language))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fall_back(f"failed: {type(exc).__name__}: {exc}")
            return
        finally:
            if then is not None:
                then()
        ms = (time.monotonic() - t0) * 1000
        complete = p >= self.threshold
        s = self.settings
        applied = self.segmenter.hold(ev.pause, s.complete_silence_ms if complete else s.max_pause_ms)
        self.verdicts.append(TurnVerdict(ev.pause, p, complete, ms, applied))
        log.debug("session %s pause %d: end of turn p=%.2f (%s) in %.0f ms%s", self.bus.session_id, ev.pause, p,
                  "complete" if complete else "not yet", ms, "" if applied else ", too late")
        if not applied and self._ended_pause == ev.pause:
            self._fall_back(f"answered in {ms:.0f} ms, after the silence rule had ended the turn")

    def _fall_back(self, why: str) -> None:
        self.fallbacks += 1
        if not self._warned:
            self._warned = True
            name = getattr(self.detector, "name", type(self.detector).__name__)
            log.warning("session %s: turn detector %r %s: the silence rule decides (voice.vad.min_silence_ms; "
                        "this warning is given once per session)", self.bus.session_id, name, why)

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
