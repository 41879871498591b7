"""Voice activity detection, engine-neutral: a per-session segmenter over any :class:`~fay_core.engines.VADStream`.

:class:`Segmenter` turns a stream of microphone frames of any size into speech events: start (after ``start_ms``
of speech, with the onset placed where the speech began), silence (the user paused: a chance to transcribe
early, and for the turn gate to judge), resume, and end (after ``min_silence_ms`` of silence, or the silence
the turn gate asked for with :meth:`Segmenter.hold`) with the utterance's audio, pre-roll included so the first
syllable is not lost. The speech probability of each window comes from the VAD engine's stream
(``voice.vad.engine``; the built-in one is a plugin).

:meth:`Segmenter.feed` scores each window at once with the session's own stream. A caller that scores windows
elsewhere (one batched model call across sessions, :mod:`.vad_batch`) cuts them with :meth:`Segmenter.cut`
and hands the probabilities back in order with :meth:`Segmenter.advance`: the events are the same.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

from ..engines import VADStream


@dataclass(frozen=True, slots=True)
class SpeechStart:
    """Speech began at ``onset`` (monotonic seconds; where the first voiced window started)."""

    onset: float


@dataclass(frozen=True, slots=True)
class SpeechPaused:
    """The user went quiet at ``at`` (monotonic); ``pcm`` is the utterance so far (pre-roll included).

    ``pause`` numbers the pauses of the stream: :meth:`Segmenter.hold` names the one it changes.
    """

    at: float
    pcm: bytes
    pause: int = 0


@dataclass(frozen=True, slots=True)
class SpeechResumed:
    """Speech came back before the silence was long enough to end the utterance."""


@dataclass(frozen=True, slots=True)
class SpeechEnd:
    """The utterance ended: ``speech_end`` (monotonic) is when the last speech was heard."""

    pcm: bytes
    onset: float
    speech_end: float
    duration_ms: float
    forced: bool = False


VADEvent = SpeechStart | SpeechPaused | SpeechResumed | SpeechEnd


class Clock(NamedTuple):
    """When audio arrived: ``arrived`` samples of the stream had come by monotonic time ``now``."""

    now: float
    arrived: int


class Window(NamedTuple):
    """One model window of the stream (``frame_samples`` 16-bit samples) and the clock of the frame that ended it."""

    pcm: bytes
    clock: Clock


@dataclass(frozen=True, slots=True)
class SegmenterConfig:
    """Thresholds and durations of the segmenter (see ``VADSettings`` for their meaning)."""

    threshold: float = 0.5
    neg_threshold: float = 0.35
    start_ms: int = 64
    min_silence_ms: int = 300
    preroll_ms: int = 300
    tail_ms: int = 64
    max_utterance_ms: int = 30000


class Segmenter:
    """Streams microphone audio through a :class:`~fay_core.engines.VADStream` and reports speech events.

    ``feed(pcm, now)`` accepts frames of any size (16 kHz, 16-bit mono); ``now`` is the monotonic time the last
    sample of ``pcm`` arrived, so event times are on the same clock as the rest of the session.
    """

    def __init__(self, stream: VADStream, config: SegmenterConfig | None = None) -> None:
        self.stream = stream
        self.config = config or SegmenterConfig()
        self.rate = int(stream.sample_rate)
        self.window = int(stream.frame_samples)
        self._pending = bytearray()
        self._preroll: deque[bytes] = deque(maxlen=max(1, self.config.preroll_ms * self.rate // 1000 // self.window))
        self._utt = bytearray()
        self._samples = 0  # samples processed by the model
        self._clock = Clock(0.0, 0)  # when the last window processed arrived
        self._arrived = 0  # samples received
        self.speaking = False
        self.paused = False
        self._run = 0  # consecutive voiced windows before a start
        self._onset_sample = 0
        self._silence_sample = 0
        self._last_voiced = 0
        self.pauses = 0  # pauses so far (the id of the current one while paused)
        self._limit_ms: float | None = None  # silence that ends the current pause, if not min_silence_ms
        self.last_probability = 0.0
        self.windows = 0

    # --- clock ------------------------------------------------------------------------------------------

    def time_of(self, sample: int) -> float:
        """Monotonic time at which ``sample`` (index in the stream) arrived."""
        now, arrived = self._clock
        return now - (arrived - sample) / self.rate

    @property
    def speech_ms(self) -> float:
        """How long the current utterance's speech has lasted so far (0 when not speaking)."""
        if not self.speaking:
            return 0.0
        return (self._samples - self._onset_sample) * 1000 / self.rate

    @property
    def silence_ms(self) -> float:
        """How long the current pause has lasted (0 when not paused)."""
        if not self.paused:
            return 0.0
        return (self._samples - self._silence_sample) * 1000 / self.rate

    def hold(self, pause: int, silence_ms: float) -> bool:
        """End pause ``pause`` after ``silence_ms`` of silence instead of ``min_silence_ms`` (the turn gate's
        verdict). Returns False when that pause is over (speech resumed or the utterance ended): too late."""
        if not (self.speaking and self.paused and pause == self.pauses):
            return False
        self._limit_ms = silence_ms
        return True

    def utterance(self) -> bytes:
        """The current utterance's audio so far (pre-roll included)."""
        return bytes(self._utt)

    # --- feeding ----------------------------------------------------------------------------------------

    def feed(self, pcm: bytes, now: float) -> list[VADEvent]:
        """Process ``pcm``; return the events it caused, in order."""
        events: list[VADEvent] = []
        for window in self.cut(pcm, now):
            self._step(window, self.stream.probability(window.pcm), events)
        return events

    def cut(self, pcm: bytes, now: float) -> list[Window]:
        """Take ``pcm`` in (frames of any size; ``now``: when its last sample arrived) and return the whole model
        windows it completes, to be scored and handed back, in order, to :meth:`advance`."""
        self._arrived += len(pcm) // 2
        clock = Clock(now, self._arrived)
        self._pending += pcm
        size = self.window * 2
        out: list[Window] = []
        while len(self._pending) >= size:
            out.append(Window(bytes(self._pending[:size]), clock))
            del self._pending[:size]
        return out

    def advance(self, window: Window, probability: float) -> list[VADEvent]:
        """Process the next window of :meth:`cut`, scored ``probability`` by this segmenter's stream (or a
        batched call that advanced the stream's state the same way); return the events it caused."""
        events: list[VADEvent] = []
        self._step(window, probability, events)
        return events

    def _step(self, window: Window, p: float, events: list[VADEvent]) -> None:
        cfg = self.config
        frame = window.pcm
        self._clock = window.clock
        self.last_probability = p
        self.windows += 1
        start = self._samples
        self._samples += self.window
        if not self.speaking:
            self._preroll.append(frame)
            if p >= cfg.threshold:
                if self._run == 0:
                    self._onset_sample = start
                self._run += 1
                if self._run * self.window * 1000 >= cfg.start_ms * self.rate:
                    self.speaking = True
                    self.paused = False
                    self._run = 0
                    self._last_voiced = self._samples
                    self._utt = bytearray(b"".join(self._preroll))
                    self._preroll.clear()
                    events.append(SpeechStart(onset=self.time_of(self._onset_sample)))
            else:
                self._run = 0
            return
        self._utt += frame
        if p >= cfg.threshold or (not self.paused and p >= cfg.neg_threshold):
            self._last_voiced = self._samples
            if self.paused:
                self.paused = False
                self._limit_ms = None
                events.append(SpeechResumed())
        elif not self.paused:
            self.paused = True
            self.pauses += 1
            self._limit_ms = None
            self._silence_sample = start
        if self.paused:
            silent_ms = (self._samples - self._silence_sample) * 1000 / self.rate
            if silent_ms >= cfg.tail_ms and silent_ms - self.window * 1000 / self.rate < cfg.tail_ms:
                events.append(
                    SpeechPaused(at=self.time_of(self._silence_sample), pcm=bytes(self._utt), pause=self.pauses)
                )
            limit = self._limit_ms if self._limit_ms is not None else cfg.min_silence_ms
            if silent_ms >= limit and silent_ms >= cfg.tail_ms:
                events.append(self._end(forced=False))
                return
        if (self._samples - self._onset_sample) * 1000 >= cfg.max_utterance_ms * self.rate:
            events.append(self._end(forced=True))

    def _end(self, *, forced: bool) -> SpeechEnd:
        cfg = self.config
        end_sample = self._silence_sample if self.paused else self._samples
        keep = len(self._utt) - (self._samples - min(self._samples, end_sample + cfg.tail_ms * self.rate // 1000)) * 2
        pcm = bytes(self._utt[: max(0, keep)])
        ev = SpeechEnd(
            pcm=pcm,
            onset=self.time_of(self._onset_sample),
            speech_end=self.time_of(end_sample),
            duration_ms=(end_sample - self._onset_sample) * 1000 / self.rate,
            forced=forced,
        )
        self.speaking = False
        self.paused = False
        self._limit_ms = None
        self._utt = bytearray()
        self._run = 0
        return ev
