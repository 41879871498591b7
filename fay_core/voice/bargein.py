"""Barge-in: when the user's speech stops the avatar, and when it does not.

A persona's ``interruption`` block drives :class:`BargeIn`:

1. Speech that starts while the avatar speaks is a *candidate* unless the persona is ``half_duplex`` (the
   microphone is ignored while the avatar talks), the avatar started talking less than ``echo_warmup_ms`` ago
   (its own voice leaking back), or what is playing cannot be interrupted: the persona is ``uninterruptible``,
   or the passage was marked ``[uninterruptible]...[/uninterruptible]`` in the answer's text (terms and
   conditions). Such speech is ignored, as in half duplex.
2. Once the candidate's speech lasts ``min_speech_ms`` (120 ms by default: the VAD onset of sustained speech),
   playout pauses at once (this is the stop latency the benchmark reports, from the speech onset).
3. While paused, the utterance so far is transcribed; ``min_words`` real words (at least one) make it an
   interruption: the turn's audio is flushed and ``Interrupted`` carries the words actually played. Fillers
   ("mm", "uh", "嗯") never count, and neither do backchannels ("mm-hm", "yeah", "right", "okay"; "对", "好的",
   "是"). No real words within ``false_interruption_ms`` resumes playout where it paused, and the utterance
   (a cough, a backchannel, noise) does not start a turn.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from ..events import LatencyMeasured
from ..text import words

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
#: words that acknowledge without taking the turn ("mm-hm", "yeah", "对", "好的"): never an interruption
BACKCHANNELS = frozenset(
    [
        "yeah", "yes", "yep", "yup", "ya", "right", "okay", "ok", "sure", "alright", "uh-huh", "mhm", "aha",
        "对", "是", "好", "行", "嗯", "噢", "喔", "明白", "没错"
    ]
)
#: particles that only count with other words ("好的", "是的", "对啊" are backchannels)
_PARTICLES = frozenset(["的", "啊", "呀", "吧", "啦", "呢", "哈"])


def real_words(text: str) -> int:
    """Words in ``text`` that are not fillers or backchannels (a CJK character counts as a word)."""
    found = [w for w in words(text.lower()) if w not in FILLERS and w not in BACKCHANNELS]
    return 0 if all(w in _PARTICLES for w in found) else len(found)


class Verdict(Enum):
    """What to do with an utterance once it ended."""

    TURN = "turn"  # an ordinary utterance, or a confirmed interruption: answer it
    DROP = "drop"  # heard while the avatar spoke and not an interruption: ignore it


class _Kind(Enum):
    IDLE = 0  # the utterance started while the avatar was quiet
    IGNORED = 1  # half duplex or echo warm-up
    ATTEMPT = 2  # speech over the avatar: an interruption attempt


@dataclass
class _Attempt:
    """One attempt to interrupt a turn; it may span several utterances (the user pauses mid-sentence)."""

    turn: int
    onset: float
    paused: bool = False
    outcome: str = ""  # "", "interrupted" or "resumed"


@dataclass(frozen=True)
class Ticket:
    """The barge-in state of an utterance, taken when it ended (its transcript comes later)."""

    kind: _Kind
    attempt: _Attempt | None


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
        self._kind = _Kind.IDLE
        self._attempt: _Attempt | None = None  # the open attempt (paused, waiting for words), if any
        self._utterance: Callable[[], bytes] = bytes
        self.stop_latencies_ms: list[float] = []
        self.false_interruptions = 0
        self.interruptions = 0

    @property
    def state(self) -> str:
        """``idle``, ``ignored``, ``candidate``, ``paused``, ``interrupted`` or ``resumed`` (current utterance)."""
        if self._kind is not _Kind.ATTEMPT or self._attempt is None:
            return self._kind.name.lower()
        a = self._attempt
        return a.outcome or ("paused" if a.paused else "candidate")

    # --- fed by the pipeline ----------------------------------------------------------------------------

    def speech_started(self, onset: float, utterance: Callable[[], bytes]) -> None:
        """VAD speech start at ``onset``; ``utterance()`` returns the utterance's audio so far."""
        self._utterance = utterance
        a = self._attempt
        if a is not None and a.paused and not a.outcome:
            self._kind = _Kind.ATTEMPT  # the user goes on after a pause: the same attempt continues
            return
        cfg = self.config
        if not self.playout.speaking or not cfg.enabled:
            self._kind, self._attempt = _Kind.IDLE, None
        elif (
            cfg.half_duplex or cfg.uninterruptible or self.playout.protected
            or (onset - self.playout.speaking_since) * 1000 < cfg.echo_warmup_ms
        ):
            self._kind, self._attempt = _Kind.IGNORED, None
        else:
            self._kind, self._attempt = _Kind.ATTEMPT, _Attempt(self.playout.speaking_turn, onset)

    def speech_progress(self, speech_ms: float) -> None:
        """The current utterance has lasted ``speech_ms``: pause playout once it is long enough."""
        a = self._attempt
        if self._kind is not _Kind.ATTEMPT or a is None or a.paused or speech_ms < self.config.min_speech_ms:
            return
        if self.playout.protected:  # an uninterruptible passage began meanwhile: it plays on
            return
        if self.playout.speaking_turn != a.turn or not self.playout.pause():
            self._kind, self._attempt = _Kind.IDLE, None  # the avatar finished meanwhile: an ordinary utterance
            return
        a.paused = True
        now = time.monotonic()
        stop_ms = (now - a.onset) * 1000
        self.stop_latencies_ms.append(stop_ms)
        self.bus.publish(
            LatencyMeasured(session_id=self.bus.session_id, turn_id=a.turn, stage="barge_in_stop", ms=stop_ms,
                            since="speech_onset")
        )
        self.bus.spawn(self._confirm(a, now), name="voice.barge-in")

    def speech_ended(self) -> Ticket:
        """The utterance ended (its transcript is still to come): take its state for :meth:`decide`."""
        ticket = Ticket(self._kind, self._attempt if self._kind is _Kind.ATTEMPT else None)
        self._kind = _Kind.IDLE
        return ticket

    def decide(self, ticket: Ticket, text: str | None) -> Verdict:
        """What to do with an ended utterance, now that its transcript ``text`` is known (``None``: too short)."""
        if ticket.kind is _Kind.IDLE:
            return Verdict.TURN
        a = ticket.attempt
        if ticket.kind is _Kind.IGNORED or a is None:
            return Verdict.DROP
        if a.outcome == "interrupted":
            return Verdict.TURN
        words = real_words(text or "")
        still_on = self.playout.speaking_turn == a.turn
        if words >= self.need_words and still_on:
            self._interrupt(a)  # confirmed by the final transcript
            return Verdict.TURN
        if a.paused and not a.outcome and self._attempt is a and not self._continuing(a):
            self._resume(a)  # the whole utterance had no real words: a cough, a backchannel
        if words >= self.need_words and not still_on and not a.paused:
            return Verdict.TURN  # the avatar finished while the user spoke: answer them
        return Verdict.DROP

    def _continuing(self, a: _Attempt) -> bool:
        """True when a newer utterance of the same attempt is under way (it will decide)."""
        return self._kind is _Kind.ATTEMPT and self._attempt is a

    # --- deciding -----------------------------------------------------------------------------------------

    async def _confirm(self, a: _Attempt, paused_at: float) -> None:
        deadline = paused_at + self.config.false_interruption_ms / 1000
        while not a.outcome:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                text = await asyncio.wait_for(self.transcribe(self._utterance()), remaining)
            except TimeoutError:
                break
            if a.outcome:
                return
            if real_words(text) >= self.need_words and self.playout.speaking_turn == a.turn:
                self._interrupt(a)
                return
            await asyncio.sleep(0.05)
        if not a.outcome:
            self._resume(a)

    def _interrupt(self, a: _Attempt) -> None:
        a.outcome = "interrupted"
        self.interruptions += 1
        played = self.playout.interrupt(a.turn, onset=a.onset)
        log.info("session %s: barge-in stopped turn %d after %r", self.bus.session_id, a.turn, played)

    def _resume(self, a: _Attempt) -> None:
        a.outcome = "resumed"
        self.false_interruptions += 1
        if self.playout.speaking_turn == a.turn:
            self.playout.resume()
        log.info("session %s: false interruption, turn %d resumes", self.bus.session_id, a.turn)
