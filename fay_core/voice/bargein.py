"""Barge-in: when the user's speech stops the avatar, and when it does not (DESIGN.md section 3).

A persona's ``interruption`` block drives :class:`BargeIn`:

1. Speech that starts while the avatar speaks is a *candidate* unless the persona is ``half_duplex`` (the
   microphone is ignored while the avatar talks) or the avatar started talking less than ``echo_warmup_ms`` ago
   (its own voice leaking back).
2. Once the candidate's speech lasts ``min_speech_ms``, playout pauses at once (this is the stop latency the
   benchmark reports, from the speech onset).
3. While paused, the utterance so far is transcribed; ``min_words`` real words (at least one; fillers such as
   "mm-hm" or "嗯" do not count) make it an interruption: the turn's audio is flushed and ``Interrupted`` carries
   the words actually played. No real words within ``false_interruption_ms`` resumes playout where it paused,
   and the utterance (a cough, a backchannel) does not start a turn.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import TYPE_CHECKING

from ..events import LatencyMeasured

if TYPE_CHECKING:
    from ..bus import Bus
    from ..persona import InterruptionConfig
    from .playout import Playout

log = logging.getLogger(__name__)

FILLERS = frozenset(
    [
        "mm", "mmm", "mhm", "hm", "hmm", "uh", "um", "uhm", "er", "erm", "ah", "oh", "uh-huh", "mm-hm", "mm-hmm", "huh",
        "yeah-yeah", "嗯", "啊", "哦", "呃", "额", "噢", "唔", "嗯嗯", "哈"
    ]
)
_WORD = re.compile(r"[\u3400-\u9fff]|[A-Za-z0-9']+(?:-[A-Za-z0-9']+)*")


def real_words(text: str) -> int:
    """Words in ``text`` that are not fillers (a CJK character counts as a word)."""
    return sum(1 for w in _WORD.findall(text.lower()) if w not in FILLERS)


class Verdict(Enum):
    """What to do with an utterance once it ended."""

    TURN = "turn"  # an ordinary utterance, or a confirmed interruption: answer it
    DROP = "drop"  # heard while the avatar spoke and not an interruption: ignore it


class _State(Enum):
    IDLE = 0  # the utterance started while the avatar was quiet
    IGNORED = 1  # half duplex or echo warm-up
    CANDIDATE = 2  # speech while the avatar speaks, shorter than min_speech_ms so far
    PAUSED = 3  # playout paused, waiting for real words
    INTERRUPTED = 4
    RESUMED = 5  # false interruption


class BargeIn:
    """Per-session barge-in state machine, fed by the voice pipeline's VAD events."""

    def __init__(
        self,
        bus: Bus,
        playout: Playout,
        config: InterruptionConfig,
        transcribe: Callable[[bytes], Awaitable[str]],
    ) -> None:
        self.bus = bus
        self.playout = playout
        self.config = config
        self.transcribe = transcribe
        self.need_words = max(1, config.min_words)
        self._state = _State.IDLE
        self._onset = 0.0
        self._turn = 0
        self._gen = 0
        self._utterance: Callable[[], bytes] = bytes
        self.stop_latencies_ms: list[float] = []
        self.false_interruptions = 0
        self.interruptions = 0

    @property
    def state(self) -> str:
        return self._state.name.lower()

    # --- fed by the pipeline ----------------------------------------------------------------------------

    def speech_started(self, onset: float, utterance: Callable[[], bytes]) -> None:
        """VAD speech start at ``onset``; ``utterance()`` returns the utterance's audio so far."""
        self._gen += 1
        self._utterance = utterance
        self._onset = onset
        cfg = self.config
        if not self.playout.speaking or not cfg.enabled:
            self._state = _State.IDLE
            return
        self._turn = self.playout.speaking_turn
        if cfg.half_duplex or (onset - self.playout.speaking_since) * 1000 < cfg.echo_warmup_ms:
            self._state = _State.IGNORED
        else:
            self._state = _State.CANDIDATE

    def speech_progress(self, speech_ms: float) -> None:
        """The current utterance has lasted ``speech_ms``: pause playout once it is long enough."""
        if self._state is not _State.CANDIDATE or speech_ms < self.config.min_speech_ms:
            return
        if self.playout.speaking_turn != self._turn or not self.playout.pause():
            self._state = _State.IDLE  # the avatar finished meanwhile: an ordinary utterance
            return
        self._state = _State.PAUSED
        now = time.monotonic()
        stop_ms = (now - self._onset) * 1000
        self.stop_latencies_ms.append(stop_ms)
        self.bus.publish(
            LatencyMeasured(session_id=self.bus.session_id, turn_id=self._turn, stage="barge_in_stop", ms=stop_ms,
                            since="speech_onset")
        )
        self.bus.spawn(self._confirm(self._gen, now), name="voice.barge-in")

    def speech_ended(self, text: str | None) -> Verdict:
        """The utterance ended with transcript ``text`` (``None``: too short to transcribe)."""
        state = self._state
        self._state = _State.IDLE
        self._gen += 1
        if state is _State.IDLE or state is _State.INTERRUPTED:
            return Verdict.TURN
        if state is _State.IGNORED:
            return Verdict.DROP
        words = real_words(text or "")
        if words >= self.need_words and self.playout.speaking_turn == self._turn:
            self._interrupt()  # confirmed late (the words came with the final transcript)
            return Verdict.TURN
        if state is _State.PAUSED:
            self._resume()
        if state is _State.CANDIDATE and words >= self.need_words and not self.playout.speaking:
            return Verdict.TURN  # the avatar finished while the user spoke: answer them
        return Verdict.DROP

    # --- deciding -----------------------------------------------------------------------------------------

    async def _confirm(self, gen: int, paused_at: float) -> None:
        deadline = paused_at + self.config.false_interruption_ms / 1000
        while self._state is _State.PAUSED and gen == self._gen:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                text = await asyncio.wait_for(self.transcribe(self._utterance()), remaining)
            except TimeoutError:
                break
            if self._state is not _State.PAUSED or gen != self._gen:
                return
            if real_words(text) >= self.need_words:
                self._interrupt()
                return
            await asyncio.sleep(0.05)
        if self._state is _State.PAUSED and gen == self._gen:
            self._resume()

    def _interrupt(self) -> None:
        self._state = _State.INTERRUPTED
        self.interruptions += 1
        played = self.playout.interrupt(self._turn, onset=self._onset)
        log.info("session %s: barge-in stopped turn %d after %r", self.bus.session_id, self._turn, played)

    def _resume(self) -> None:
        self._state = _State.RESUMED
        self.false_interruptions += 1
        self.playout.resume()
        log.info("session %s: false interruption, turn %d resumes", self.bus.session_id, self._turn)
