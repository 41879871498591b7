"""The playout clock: a session's answer audio leaves here in real time, 20 ms at a time.

:class:`Playout` releases one frame of 16-bit mono PCM at :attr:`Playout.sample_rate` every 20 ms (silence when
idle), paced against ``time.monotonic()`` with drift correction: frame ``n`` is due at ``t0 + n * 20 ms``, so
timer jitter never accumulates; if the event loop stalls for more than ``max_lag_s`` the clock re-anchors
instead of bursting. The first audio after silence does not wait for the next tick: it leaves at once and the
clock re-anchors there (one short frame interval, which receivers' jitter buffers absorb). Every released frame
goes synchronously to each listener ``cb(pcm, pts, turn_id)`` (the WebRTC audio track, avatar renderers);
``pts`` is the frame's output stream time (frame index x 0.02 s).

As audio is released it publishes ``AvatarStartedSpeaking``, ``WordPlayed`` (following each chunk's word
timings) and ``AvatarStoppedSpeaking``. :meth:`Playout.schedule` publishes ``SpeechScheduled`` with the pts at
which a chunk will start. :meth:`pause`/:meth:`resume` hold the audio in place (``PlayoutPaused``/
``PlayoutResumed``: the rest of the turn then plays ``shift_s`` later); :meth:`interrupt` flushes a turn's audio
and publishes ``Interrupted`` with the words actually played.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ..bus import Bus
from ..engines import AudioChunk
from ..events import (
    AvatarStartedSpeaking,
    AvatarStoppedSpeaking,
    Interrupted,
    PlayoutPaused,
    PlayoutResumed,
    SpeechScheduled,
    WordPlayed,
    WordTiming,
)
from .audio import OUT_RATE, resample
from ..text import is_wide, join

log = logging.getLogger(__name__)

Listener = Callable[[bytes, float, int], None]


@dataclass
class _Word:
    word: str
    sample: int  # where it starts in its segment
    char_end: int  # end of the word in the segment's text


@dataclass
class _Segment:
    turn_id: int
    pcm: bytes
    text: str
    words: list[_Word]
    pos: int = 0  # bytes released
    next_word: int = 0
    started: bool = False
    protected: bool = False  # an [uninterruptible] passage: barge-in leaves it alone


@dataclass
class _TurnPlay:
    """What has been played of one turn."""

    turn_id: int
    parts: list[str] = field(default_factory=list)  # text heard, one entry per segment started
    started: bool = False
    finished: bool = False  # no more audio will be scheduled
    words: int = 0

    def played_text(self) -> str:
        return join(self.parts)


class Playout:
    """A session's real-time playout clock. Start it with :meth:`start` (its task is owned by the bus)."""

    frame_ms = 20

    def __init__(self, bus: Bus, sample_rate: int = OUT_RATE, *, max_lag_s: float = 0.2) -> None:
        self.bus = bus
        self.sample_rate = sample_rate
        self.frame_samples = sample_rate * self.frame_ms // 1000
        self.frame_bytes = self.frame_samples * 2
        self.max_lag_s = max_lag_s
        self._silence = bytes(self.frame_bytes)
        self._queue: deque[_Segment] = deque()
        self._queued_bytes = 0
        self._listeners: list[Listener] = []
        self._turns: dict[int, _TurnPlay] = {}
        self._current: _TurnPlay | None = None  # the turn being spoken (started, not stopped)
        self._dead_turn = 0  # audio of this turn and older is refused
        self._task: asyncio.Task[None] | None = None
        self._tick: asyncio.Future[bool] | None = None
        self.frame_index = 0
        self.paused = False
        self._paused_at = 0.0
        self.speaking_since = 0.0  # monotonic time the current turn's first audio left
        self.resyncs = 0
        self.late_frames = 0
        #: frames of silence released inside a turn because its next audio was not there yet (an audible gap;
        #: pauses by :meth:`pause` are not counted)
        self.starved_frames = 0

    # --- lifecycle --------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the clock (idempotent); it runs until the session's bus closes."""
        if self._task is None or self._task.done():
            self._task = self.bus.spawn(self._run(), name="voice.playout")

    def add_listener(self, cb: Listener) -> None:
        """Call ``cb(pcm, pts, turn_id)`` for every released frame (synchronously, on the event loop: be quick)."""
        self._listeners.append(cb)

    def remove_listener(self, cb: Listener) -> None:
        if cb in self._listeners:
            self._listeners.remove(cb)

    @property
    def pts(self) -> float:
        """Output time of the next frame to be released."""
        return self.frame_index * self.frame_ms / 1000

    @property
    def speaking(self) -> bool:
        """True while a turn's audio is being played (gaps between its sentences and pauses included)."""
        return self._current is not None

    @property
    def speaking_turn(self) -> int:
        return self._current.turn_id if self._current is not None else 0

    @property
    def protected(self) -> bool:
        """True while an uninterruptible passage is being spoken (``schedule(..., protected=True)``)."""
        return self._current is not None and bool(self._queue) and self._queue[0].protected

    @property
    def queued_ms(self) -> float:
        return self._queued_bytes / 2 / self.sample_rate * 1000

    def played_text(self, turn_id: int) -> str:
        """The words of ``turn_id`` released so far."""
        play = self._turns.get(turn_id)
        return play.played_text() if play else ""

    # --- scheduling -------------------------------------------------------------------------------------

    def schedule(self, turn_id: int, chunk: AudioChunk, *, protected: bool = False) -> float:
        """Queue ``chunk`` of ``turn_id``; publish ``SpeechScheduled``; return its start pts (-1 if refused).

        ``protected``: the chunk belongs to an uninterruptible passage (:attr:`protected` while it plays)."""
        if turn_id <= self._dead_turn or self.bus.closed:
            return -1.0
        pcm = resample(chunk.pcm, chunk.sample_rate, self.sample_rate)
        if len(pcm) % 2:
            pcm = pcm[:-1]
        words = _place_words(chunk.text, chunk.words, self.sample_rate)
        idle = self._current is None and not self._queue and not self.paused
        start_pts = self.pts + self._queued_bytes / 2 / self.sample_rate
        seg = _Segment(turn_id, pcm, chunk.text, words, protected=protected)
        self._queue.append(seg)
        self._queued_bytes += len(pcm)
        play = self._turns.setdefault(turn_id, _TurnPlay(turn_id))
        play.finished = False
        self.bus.publish(
            SpeechScheduled(
                session_id=self.bus.session_id, turn_id=turn_id, pcm=pcm, sample_rate=self.sample_rate,
                text=chunk.text, words=chunk.words, pts=start_pts,
            )
        )
        if idle and self._tick is not None and not self._tick.done():
            self._tick.set_result(True)  # do not wait for the next tick of silence to start speaking
        return start_pts

    def finish_turn(self, turn_id: int) -> None:
        """No more audio will come for ``turn_id``: it stops speaking once its queued audio has played."""
        play = self._turns.setdefault(turn_id, _TurnPlay(turn_id))
        play.finished = True
        if self._current is not play and not any(s.turn_id == turn_id for s in self._queue):
            self._turns.pop(turn_id, None)  # nothing was or will be played

    # --- control ----------------------------------------------------------------------------------------

    def pause(self) -> bool:
        """Hold the audio where it is (silence is sent). Returns False if nothing is being spoken."""
        if self.paused or self._current is None:
            return False
        self.paused = True
        self._paused_at = self.pts
        self.bus.publish(PlayoutPaused(session_id=self.bus.session_id, turn_id=self._current.turn_id, pts=self.pts))
        return True

    def resume(self) -> None:
        """Continue where :meth:`pause` stopped."""
        if not self.paused:
            return
        self.paused = False
        turn_id = self._current.turn_id if self._current else 0
        self.bus.publish(
            PlayoutResumed(session_id=self.bus.session_id, turn_id=turn_id, pts=self.pts,
                           shift_s=self.pts - self._paused_at)
        )

    def interrupt(self, turn_id: int | None = None, *, onset: float = 0.0, reason: str = "barge-in") -> str:
        """Stop ``turn_id`` (default: the one speaking) now: flush its audio, publish ``Interrupted`` with the
        words played and ``AvatarStoppedSpeaking(interrupted=True)``. Returns the played text."""
        if turn_id is None:
            turn_id = self.speaking_turn
        if not turn_id:
            return ""
        self.paused = False
        self._drop(turn_id)
        play = self._turns.pop(turn_id, None) or _TurnPlay(turn_id)
        text = play.played_text()
        self.bus.publish(
            Interrupted(session_id=self.bus.session_id, turn_id=turn_id, reason=reason, played_text=text, onset=onset)
        )
        if self._current is not None and self._current.turn_id == turn_id:
            self._stopped(play, interrupted=True)
        return text

    def discard(self, up_to_turn: int) -> None:
        """Silently drop the audio of ``up_to_turn`` and older turns (superseded by a newer turn)."""
        self._drop(up_to_turn)
        for tid in [t for t in self._turns if t <= up_to_turn]:
            play = self._turns.pop(tid)
            if self._current is play:
                self._stopped(play, interrupted=True)
        self.paused = False

    def _drop(self, up_to_turn: int) -> None:
        self._dead_turn = max(self._dead_turn, up_to_turn)
        kept = deque(s for s in self._queue if s.turn_id > up_to_turn)
        self._queued_bytes = sum(len(s.pcm) - s.pos for s in kept)
        self._queue = kept

    def _stopped(self, play: _TurnPlay, *, interrupted: bool) -> None:
        if self._current is play:
            self._current = None
        self.paused = False
        self.bus.publish(
            AvatarStoppedSpeaking(session_id=self.bus.session_id, turn_id=play.turn_id, interrupted=interrupted)
        )

    # --- the clock --------------------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        period = self.frame_ms / 1000
        t0 = time.monotonic()
        n = 0
        while True:
            self._release()
            n += 1
            delay = t0 + n * period - time.monotonic()
            if delay > 0:
                tick = self._tick = loop.create_future()
                timer = loop.call_later(delay, _wake, tick, False)
                try:
                    early = await tick
                finally:
                    timer.cancel()
                    self._tick = None
                if early:  # first audio after silence: out now, and the clock re-anchors here
                    t0 = time.monotonic() - n * period
            elif delay < -self.max_lag_s:
                self.resyncs += 1  # the loop stalled: re-anchor rather than burst audio out
                t0 = time.monotonic() - n * period
                await asyncio.sleep(0)
            else:
                self.late_frames += 1
                await asyncio.sleep(0)

    def _release(self) -> None:
        pts = self.pts
        self.frame_index += 1
        if self.paused or not self._queue:
            turn_id = self._current.turn_id if self._current else 0
            if not self.paused and self._current is not None and not self._current.finished:
                self.starved_frames += 1
            for cb in self._listeners:
                cb(self._silence, pts, turn_id)
            if not self.paused and self._current is not None and self._current.finished:
                self._turns.pop(self._current.turn_id, None)
                self._stopped(self._current, interrupted=False)
            return
        need = self.frame_bytes
        out = bytearray()
        turn_id = self._queue[0].turn_id
        while need and self._queue and self._queue[0].turn_id == turn_id:
            seg = self._queue[0]
            if not seg.started:
                self._segment_started(seg)
            take = seg.pcm[seg.pos : seg.pos + need]
            self._words_released(seg, seg.pos // 2, (seg.pos + len(take)) // 2, pts + len(out) / 2 / self.sample_rate)
            seg.pos += len(take)
            out += take
            need -= len(take)
            self._queued_bytes -= len(take)
            if seg.pos >= len(seg.pcm):
                self._queue.popleft()
                play = self._turns.get(seg.turn_id)
                if play is not None and play.parts:
                    play.parts[-1] = seg.text
        if need:
            out += self._silence[:need]
        frame = bytes(out)
        for cb in self._listeners:
            cb(frame, pts, turn_id)

    def _segment_started(self, seg: _Segment) -> None:
        seg.started = True
        play = self._turns.setdefault(seg.turn_id, _TurnPlay(seg.turn_id))
        play.parts.append("")
        if self._current is not play:
            if self._current is not None:  # an older turn still marked speaking: it is over
                self._turns.pop(self._current.turn_id, None)
                self._stopped(self._current, interrupted=False)
            self._current = play
            play.started = True
            self.speaking_since = time.monotonic()
            self.bus.publish(AvatarStartedSpeaking(session_id=self.bus.session_id, turn_id=seg.turn_id))

    def _words_released(self, seg: _Segment, start: int, end: int, pts: float) -> None:
        words = seg.words
        play = self._turns.get(seg.turn_id)
        while seg.next_word < len(words) and words[seg.next_word].sample < end:
            w = words[seg.next_word]
            seg.next_word += 1
            wpts = pts + max(0, w.sample - start) / self.sample_rate
            if play is not None:
                play.parts[-1] = seg.text[: w.char_end]
                play.words += 1
            self.bus.publish(WordPlayed(session_id=self.bus.session_id, turn_id=seg.turn_id, word=w.word, pts=wpts))


def _wake(tick: asyncio.Future[bool], early: bool) -> None:
    if not tick.done():
        tick.set_result(early)


def _place_words(text: str, timings: tuple[WordTiming, ...], rate: int) -> list[_Word]:
    """Word start samples (at the output rate) and where each word ends in ``text``."""
    out: list[_Word] = []
    cursor = 0
    n = len(timings)
    for i, w in enumerate(timings):
        idx = text.find(w.word, cursor) if w.word else -1
        # a word the engine normalised ("3.5" read as "three point five") is placed proportionally
        end = idx + len(w.word) if idx >= 0 else max(cursor, round(len(text) * (i + 1) / n))
        # keep trailing punctuation of the word with it
        while end < len(text) and not text[end].isspace() and not text[end].isalnum() and not is_wide(text[end]):
            end += 1
        cursor = end
        out.append(_Word(w.word, int(w.start_ms * rate / 1000), end))
    if out:
        # the last word takes the rest of the text (closing punctuation)
        last = out[-1]
        if text[last.char_end :].strip() and not any(c.isalnum() for c in text[last.char_end :]):
            last.char_end = len(text)
    return out
