"""The voice pipeline of one session: microphone audio in, spoken answers out.

The session's assembly builds it when audio arrives (:meth:`fay_core.assembly.Assembly.add_voice`)::

    AudioReceived ─► VAD segmenter ─► ASR ─► TranscriptFinal ─► Agent
                          │ turn gate (at a pause: finished, or not yet? :mod:`.turns`)
                          │ barge-in (pause / interrupt / resume)
    AgentTextDelta ─► sentence splitter ─► TTS (engine + fallbacks) ─► Playout ─► listeners (WebRTC, avatar)

The first piece of an answer is its first clause (``voice.tts.first_piece``, :mod:`.splitter`), so its first
audio does not wait for a long first sentence to be synthesized. Where that clause meets the rest of its
sentence the voice is told the sentence goes on (:meth:`~fay_core.voice.speech_text.SpeechText.continued`) and
the seam is cut to the length of a pause inside a sentence (``voice.tts.seam_ms``, :func:`.tts.trim_chunk`):
the playout plays the pieces back to back, sample after sample.

The session's disclosure (that an AI speaks, :mod:`fay_core.disclosure`) is spoken first, before the first
answer, under that turn but as no words of it (the history's "heard" text and the ``word`` messages are the
answer's alone). That turn's ``first_audio_out`` is when the *answer's* first audio leaves, not the disclosure's.
Input listeners (:meth:`VoicePipeline.add_input_listener`) get the microphone audio as the VAD does (16 kHz).

Latency: the ASR runs while the user speaks (partials when a worker is free and transcriptions are cheap) and
again as soon as the user pauses (``early_final``), so when the VAD's end-of-speech wait is over the transcript
is usually ready and the LLM starts at once. Every voice turn publishes ``LatencyMeasured`` marks measured from
the end of speech (``since="speech_end"``): ``vad_end``, ``asr_final``, ``llm_first_token``, ``first_sentence``,
``tts_first_audio``, ``first_audio_out``; typed turns get the same marks from the turn start.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from ..bus import Bus
from ..engines import ReportsBusy, ScoresBatches, SupportsWarmUp
from ..errors import FayError
from ..events import (
    AgentTextDelta,
    AgentTurnFinished,
    AudioReceived,
    AvatarStartedSpeaking,
    ErrorRaised,
    Event,
    Interrupted,
    LatencyMeasured,
    TranscriptFinal,
    TranscriptPartial,
    UserStartedSpeaking,
    UserStoppedSpeaking,
    UserTextReceived,
)
from .audio import IN_RATE, OUT_RATE, resample
from .bargein import BargeIn, Ticket, Verdict
from .playout import Playout
from .splitter import SentenceSplitter, ends_sentence, protected_pieces, speakable
from .tts import Speaker, trim_chunk
from .turns import TurnGate
from .vad import Segmenter, SegmenterConfig, SpeechEnd, SpeechPaused, SpeechResumed, SpeechStart, VADEvent
from .vad_batch import Listener, VADBatcher

if TYPE_CHECKING:
    from ..disclosure import Disclosure
    from ..persona import Persona
    from ..plugins import Plugins
    from ..settings import VoiceSettings

log = logging.getLogger(__name__)

#: an input listener: ``cb(pcm, ts)`` for each microphone frame, 16-bit mono at 16 kHz, received at ``ts``
InputListener = Callable[[bytes, float], None]

#: partial transcripts run only while a transcription takes less than this share of the interval between them,
#: so that on a busy CPU they never delay the final transcript (which may queue behind one)
PARTIAL_BUDGET = 0.3

#: leading silence kept on a piece that goes on with the one before it (the seam's pause is the earlier
#: piece's trailing silence, cut to ``voice.tts.seam_ms``)
SEAM_LEAD_MS = 20


@dataclass
class _Clock:
    """Latency marks of one turn, measured from ``ref`` (the end of speech, or the turn start)."""

    ref: float
    since: str
    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, stage: str, at: float | None = None) -> float:
        ms = ((at if at is not None else time.monotonic()) - self.ref) * 1000
        self.marks.setdefault(stage, ms)
        return ms


@dataclass
class _TurnVoice:
    turn_id: int
    clock: _Clock
    splitter: SentenceSplitter = field(default_factory=SentenceSplitter)
    #: (text, protected, joins: the piece ends inside its sentence, the next piece goes on with it)
    sentences: asyncio.Queue[tuple[str, bool, bool] | None] = field(default_factory=asyncio.Queue)
    protected: bool = False  # inside an [uninterruptible] passage
    task: asyncio.Task[None] | None = None
    deltas: int = 0
    published: set[str] = field(default_factory=set)
    disclose: bool = False  # speak the disclosure before the answer
    disclosure_end: float | None = None  # where the disclosure's audio ends (output time), until it has played
    answer_pts: float | None = None  # with a disclosure: where the answer's first audio starts (output time)


class VoicePipeline:
    """Listens and speaks for one session, on its bus, with the engines the registry gives it."""

    def __init__(self, bus: Bus, persona: Persona, settings: VoiceSettings, plugins: Plugins, *,
                 disclosure: Disclosure | None = None) -> None:
        self.bus = bus
        self.disclosure = disclosure
        self._input_listeners: list[InputListener] = []
        #: while set and false, microphone audio is not listened to (``vision.listen_only_when_present``); an
        #: utterance in progress when it turns false is ended as if the speaker fell silent
        self.listen_gate: Callable[[], bool] | None = None
        self.ignored_frames = 0  #: microphone frames not listened to because of :attr:`listen_gate`
        self.settings = settings
        lang = settings.asr.language or persona.language
        self.language: str | None = None if lang == "auto" else lang
        self.vad = plugins.pick("vad", settings.vad.engine)
        self.asr = plugins.pick("asr", settings.asr.engine, self.language)
        #: ``voice.asr.fallback``: the engines that transcribe, in order, when :attr:`asr` fails
        self.asr_fallback = [plugins.engine("asr", name) for name in settings.asr.fallback
                             if name != getattr(self.asr, "name", None)]
        self._asr_resting_until = 0.0  # monotonic time until which a failed :attr:`asr` is skipped
        v = self.settings.vad
        self.segmenter = Segmenter(
            self.vad.create_stream(IN_RATE),
            SegmenterConfig(
                threshold=v.threshold, neg_threshold=v.neg_threshold, start_ms=v.start_ms,
                min_silence_ms=v.min_silence_ms, preroll_ms=v.preroll_ms, tail_ms=v.tail_ms,
                max_utterance_ms=int(v.max_utterance_s * 1000),
            ),
        )
        #: feeds the segmenter; from start(), with the engine's shared batcher (``voice.vad.batch``)
        self.listener = Listener(self.segmenter, self._on_speech, name=bus.session_id, on_error=self._vad_failed)
        self.turn_gate = TurnGate.create(bus, self.segmenter, plugins, settings.turn, self.language or persona.language)
        self.playout = Playout(self.bus, OUT_RATE)
        self.speaker = Speaker(bus, persona, settings, plugins)
        self.bargein = BargeIn(self.bus, self.playout, persona.interruption, self._words_of)
        self._turns: dict[int, _TurnVoice] = {}
        self._clocks: deque[_Clock] = deque(maxlen=8)  # voice utterances waiting for their turn to start
        self._early: tuple[int, asyncio.Task[str]] | None = None
        self._partial: asyncio.Task[None] | None = None
        self._partial_at_ms = 0.0
        self._utt = 0
        self._finalizing: asyncio.Task[None] | None = None
        self._rate_warned = False
        self.utterances = 0
        self.partials = 0
        self.asr_ms = 0.0  # recent transcription time (moving average): partials stop when the CPU is short
        self.started = False
        self._watching: set[int] = set()  # turns speaking the disclosure first, watched by _on_frame
        #: latency marks (ms) of recent turns, by turn id
        self.latency: dict[int, dict[str, float]] = {}

    # --- wiring -----------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.started:
            return
        self.started = True
        bus = self.bus
        v = self.settings.vad
        if v.batch and isinstance(self.vad, ScoresBatches):
            await asyncio.to_thread(self.vad.batches)  # loads the batched model once, off the event loop
            batcher = VADBatcher.shared(self.vad, wait_ms=v.batch_wait_ms)
            if batcher is not None:
                self.listener = Listener(self.segmenter, self._on_speech, batcher, bus.session_id, self._vad_failed)
        bus.subscribe(self._on_audio, AudioReceived, name="voice.audio", drop_stale=False)
        bus.subscribe(
            self._on_event, UserTextReceived, AgentTextDelta, AgentTurnFinished, Interrupted, AvatarStartedSpeaking,
            name="voice.speech", drop_stale=False,
        )
        self.playout.add_listener(self._on_frame)
        self.playout.start()
        bus.spawn(self.warm_up(), name="voice.warm-up")

    def add_input_listener(self, cb: InputListener) -> None:
        """Call ``cb(pcm, ts)`` for every microphone frame, as the VAD gets it (synchronously: be quick)."""
        self._input_listeners.append(cb)

    def remove_input_listener(self, cb: InputListener) -> None:
        if cb in self._input_listeners:
            self._input_listeners.remove(cb)

    async def warm_up(self) -> None:
        """Load the speech model and the persona's first voice now, so the first answer does not wait for them."""
        if isinstance(self.asr, SupportsWarmUp):
            await self.asr.warm_up()
        await self.turn_gate.warm_up()
        try:
            await self.speaker.warm_up()
        except Exception as exc:  # the fallbacks will speak; the first sentence reports it properly
            log.info("session %s: TTS warm-up failed: %s", self.bus.session_id, exc)

    async def close(self) -> None:
        self.listener.close()
        await self.turn_gate.close()
        for tv in self._turns.values():
            if tv.task is not None:
                tv.task.cancel()
        self._turns.clear()

    # --- listening --------------------------------------------------------------------------------------

    def _on_audio(self, ev: AudioReceived) -> None:
        pcm = ev.pcm
        if ev.sample_rate != IN_RATE:
            if not self._rate_warned:
                log.warning("session %s: microphone audio at %d Hz is resampled to 16000", self.bus.session_id,
                            ev.sample_rate)
                self._rate_warned = True
            pcm = resample(pcm, ev.sample_rate, IN_RATE)
        for cb in self._input_listeners:
            cb(pcm, ev.ts)
        gate = self.listen_gate
        if gate is not None and not gate():
            if not self.segmenter.speaking:
                self.ignored_frames += 1
                return
            pcm = bytes(len(pcm))  # the utterance in progress ends here (as if they fell silent), then nothing
        self.listener.feed(pcm, ev.ts)

    def _on_speech(self, events: list[VADEvent]) -> None:
        """The VAD's events for the windows just scored (at once, or after the batcher's round)."""
        seg = self.segmenter
        for vev in events:
            if isinstance(vev, SpeechStart):
                self._speech_started(vev)
            elif isinstance(vev, SpeechPaused):
                self._speech_paused(vev)
            elif isinstance(vev, SpeechResumed):
                self._early = None
            elif isinstance(vev, SpeechEnd):
                self._speech_ended(vev)
        if seg.speaking:
            speech_ms = seg.speech_ms
            self.bargein.speech_progress(speech_ms)
            if (
                self.settings.asr.partials
                and not seg.paused
                and self.bargein.state != "ignored"
                and speech_ms - self._partial_at_ms >= self.settings.asr.partial_interval_ms
                and (self._partial is None or self._partial.done())
                and not (isinstance(self.asr, ReportsBusy) and self.asr.busy)
                and self.asr_ms < self.settings.asr.partial_interval_ms * PARTIAL_BUDGET
            ):
                self._partial_at_ms = speech_ms
                self._partial = self.bus.spawn(self._transcribe_partial(self._utt), name="voice.asr-partial")

    def _vad_failed(self, exc: Exception) -> None:
        self._error("vad", exc)

    def _speech_started(self, ev: SpeechStart) -> None:
        self._utt += 1
        self._early = None
        self._partial_at_ms = 0.0
        self.bus.publish(UserStartedSpeaking(session_id=self.bus.session_id, onset=ev.onset))
        self.bargein.speech_started(ev.onset, self.segmenter.utterance)

    def _speech_paused(self, ev: SpeechPaused) -> None:
        if self.bargein.state == "ignored":  # half duplex or echo warm-up: nobody will read it
            return
        if self.settings.asr.early_final and len(ev.pcm) / 2 / IN_RATE * 1000 >= self.settings.vad.min_utterance_ms:
            utt, pause = self._utt, ev.pause

            def transcribe_early() -> None:  # after the turn gate's verdict (they would compete for the CPU)
                seg = self.segmenter
                if utt == self._utt and seg.speaking and seg.paused and seg.pauses == pause:  # still that pause
                    self._early = (utt, self.bus.spawn(self._transcribe(ev.pcm), name="voice.asr-early"))

            self.turn_gate.paused(ev, transcribe_early)
        else:
            self.turn_gate.paused(ev)

    def _speech_ended(self, ev: SpeechEnd) -> None:
        self.utterances += 1
        self.turn_gate.ended(ev)
        self.bus.publish(UserStoppedSpeaking(session_id=self.bus.session_id, duration_ms=ev.duration_ms))
        clock = _Clock(ev.speech_end, "speech_end")
        clock.mark("vad_end")
        early = self._early[1] if self._early and self._early[0] == self._utt else None
        self._early = None
        previous = self._finalizing
        ticket = self.bargein.speech_ended()
        self._finalizing = self.bus.spawn(self._finalize(ev, clock, early, previous, ticket), name="voice.asr-final")

    async def _finalize(
        self, ev: SpeechEnd, clock: _Clock, early: asyncio.Task[str] | None, previous: asyncio.Task[None] | None,
        ticket: Ticket,
    ) -> None:
        if previous is not None and not previous.done():
            await asyncio.gather(previous, return_exceptions=True)  # transcripts leave in utterance order
        text: str | None = None
        if ev.duration_ms >= self.settings.vad.min_utterance_ms and ticket.kind.name != "IGNORED":
            try:
                text = await early if early is not None else await self._transcribe(ev.pcm)
            except Exception as exc:
                text = None
                self._error("asr", exc)
        verdict = self.bargein.decide(ticket, text)
        if verdict is Verdict.DROP or not text:
            return
        clock.mark("asr_final")
        self._clocks.append(clock)
        self.bus.publish(
            TranscriptFinal(session_id=self.bus.session_id, text=text, language=self.language or "",
                            audio_ms=ev.duration_ms)
        )

    async def _transcribe(self, pcm: bytes) -> str:
        t0 = time.monotonic()
        engines = [self.asr, *self.asr_fallback]
        if self.asr_fallback and t0 < self._asr_resting_until:
            engines = engines[1:]
        for i, engine in enumerate(engines):
            try:
                transcript = await engine.transcribe(pcm, IN_RATE, language=self.language)
                break
            except Exception as exc:
                if i == len(engines) - 1:
                    raise
                if engine is self.asr:  # rest it: every utterance need not wait for the same failure
                    self._asr_resting_until = time.monotonic() + self.settings.asr.rest_failed_s
                self._error(f"asr.{getattr(engine, 'name', 'engine')}", exc)
        self.asr_ms += ((time.monotonic() - t0) * 1000 - self.asr_ms) * 0.3  # moving average
        return transcript.text.strip()

    async def _words_of(self, pcm: bytes) -> str:
        try:
            return await self._transcribe(pcm)
        except Exception as exc:
            self._error("asr", exc)
            return ""

    async def _transcribe_partial(self, utt: int) -> None:
        self.partials += 1
        text = await self._transcribe(self.segmenter.utterance())
        if text and utt == self._utt and self.segmenter.speaking:
            self.bus.publish(TranscriptPartial(session_id=self.bus.session_id, text=text, language=self.language or ""))

    # --- speaking ---------------------------------------------------------------------------------------

    def _on_event(self, ev: Event) -> None:
        if isinstance(ev, AgentTextDelta):
            self._on_delta(ev)
        elif isinstance(ev, UserTextReceived):
            self._on_turn(ev)
        elif isinstance(ev, AgentTurnFinished):
            tv = self._turns.get(ev.turn_id)
            if tv is not None:
                for sentence in tv.splitter.flush():
                    self._queue_sentence(tv, sentence, last=True)
                tv.sentences.put_nowait(None)
        elif isinstance(ev, Interrupted):
            tv = self._turns.pop(ev.turn_id, None)
            if tv is not None and tv.task is not None:
                tv.task.cancel()
            self.playout.discard(ev.turn_id)
        elif isinstance(ev, AvatarStartedSpeaking):
            tv = self._turns.get(ev.turn_id)
            if tv is not None and not tv.disclose:  # (with the disclosure first: see _on_frame)
                self._mark(tv, "first_audio_out", ev.ts)
                log.info(
                    "session %s turn %d latency (ms since %s): %s", self.bus.session_id, ev.turn_id, tv.clock.since,
                    ", ".join(f"{k}={v:.0f}" for k, v in tv.clock.marks.items()),
                )

    def _on_turn(self, ev: UserTextReceived) -> None:
        for tid in [t for t in self._turns if t < ev.turn_id]:
            old = self._turns.pop(tid)
            if old.task is not None:
                old.task.cancel()
        self.playout.discard(ev.turn_id - 1)
        clock = self._clocks.popleft() if ev.source == "voice" and self._clocks else _Clock(ev.ts, "turn_start")
        tv = _TurnVoice(ev.turn_id, clock, self._splitter())
        if self.disclosure is not None and not self.disclosure.spoken:  # (again if a barge-in cut it short)
            tv.disclose = True
            self._watching.add(ev.turn_id)
        self._turns[ev.turn_id] = tv
        self.latency[ev.turn_id] = clock.marks
        while len(self.latency) > 64:
            self.latency.pop(next(iter(self.latency)))
        for stage in list(clock.marks):
            self._publish_mark(tv, stage)
        tv.task = self.bus.spawn(self._speak_turn(tv), name=f"voice.tts{ev.turn_id}")

    def _splitter(self) -> SentenceSplitter:
        """A turn's splitter: its first piece a clause (``voice.tts.first_piece: clause``) or a sentence."""
        tts = self.settings.tts
        if tts.first_piece == "sentence":
            return SentenceSplitter()
        return SentenceSplitter(first_clause_chars=tts.first_clause_chars, first_phrase_chars=tts.first_phrase_chars)

    def _on_delta(self, ev: AgentTextDelta) -> None:
        tv = self._turns.get(ev.turn_id)
        if tv is None:
            return
        if tv.deltas == 0 and tv.clock.since == "speech_end":  # typed turns: the agent marks its own
            self._mark(tv, "llm_first_token", ev.ts)
        tv.deltas += 1
        for sentence in tv.splitter.feed(ev.text):
            self._queue_sentence(tv, sentence)

    def _queue_sentence(self, tv: _TurnVoice, sentence: str, *, last: bool = False) -> None:
        """Queue ``sentence`` (a piece from the splitter; ``last``: the answer's end) for the turn's speaker."""
        pieces, tv.protected = protected_pieces(sentence, tv.protected)
        joins = not last and not ends_sentence(speakable(sentence))
        for k, (piece, protected) in enumerate(pieces):
            text = speakable(piece)
            if not text or not any(c.isalnum() for c in text):
                continue
            self._mark(tv, "first_sentence")
            tv.sentences.put_nowait((text, protected, joins and k == len(pieces) - 1))

    async def _speak_turn(self, tv: _TurnVoice) -> None:
        try:
            if tv.disclose:
                await self._disclose(tv)
            seam = self.settings.tts.seam_ms
            after_seam = False  # the piece goes on with the one before (cut inside its sentence)
            while (item := await tv.sentences.get()) is not None:
                sentence, protected, joins = item
                tail = (seam if sentence.rstrip()[-1:] in ",，、；;：:" else seam / 3) if joins else None
                lead = SEAM_LEAD_MS if after_seam else None
                after_seam = joins
                try:
                    async for chunk in self.speaker.speak(sentence, tv.turn_id, continues=joins):
                        if not chunk.pcm:
                            continue
                        chunk = trim_chunk(chunk, lead_ms=lead, tail_ms=tail)
                        lead = None
                        self._mark(tv, "tts_first_audio")
                        pts = self.playout.schedule(tv.turn_id, chunk, protected=protected)
                        if tv.disclose and tv.answer_pts is None and pts >= 0:
                            tv.answer_pts = pts
                except FayError as exc:  # every engine failed: each failure was reported; the turn goes on
                    self._error("tts", exc, tv.turn_id)
        finally:
            self.playout.finish_turn(tv.turn_id)

    async def _disclose(self, tv: _TurnVoice) -> None:
        """Speak the disclosure ahead of ``tv``'s answer: audio without words (the answer's text is the turn's)."""
        disclosure = self.disclosure
        if disclosure is None:
            return
        splitter = SentenceSplitter()
        for sentence in [*splitter.feed(disclosure.text), *splitter.flush()]:
            text = speakable(sentence)
            if not text:
                continue
            try:
                async for chunk in self.speaker.speak(text, tv.turn_id):
                    silent = replace(chunk, text="", words=())
                    start = self.playout.schedule(tv.turn_id, silent) if chunk.pcm else -1.0
                    if start >= 0:
                        tv.disclosure_end = start + len(silent.pcm) / 2 / chunk.sample_rate
            except FayError as exc:  # every engine failed (reported); the text channels still show it
                self._error("tts", exc, tv.turn_id)
                return

    def _on_frame(self, pcm: bytes, pts: float, turn_id: int) -> None:
        """The playout's listener, for turns that speak the disclosure first: the disclosure counts as spoken once
        its last sample has been played, and ``first_audio_out`` is marked when the answer's first audio plays."""
        if not self._watching:
            return
        tv = self._turns.get(turn_id)
        if tv is None or not tv.disclose:
            self._watching.intersection_update(self._turns)  # turns gone (interrupted, superseded)
            return
        end = pts + self.playout.frame_ms / 1000
        if tv.disclosure_end is not None and end >= tv.disclosure_end - 1e-6:
            tv.disclosure_end = None
            if self.disclosure is not None:
                self.disclosure.deliver("voice")
        if tv.answer_pts is not None and end > tv.answer_pts + 1e-6:
            tv.answer_pts = None
            self._mark(tv, "first_audio_out")
        if tv.disclosure_end is None and "first_audio_out" in tv.clock.marks:
            self._watching.discard(turn_id)

    # --- marks and errors -------------------------------------------------------------------------------

    def _mark(self, tv: _TurnVoice, stage: str, at: float | None = None) -> None:
        if stage in tv.clock.marks:
            return
        tv.clock.mark(stage, at)
        self._publish_mark(tv, stage)

    def _publish_mark(self, tv: _TurnVoice, stage: str) -> None:
        if stage in tv.published:
            return
        tv.published.add(stage)
        self.bus.publish(
            LatencyMeasured(session_id=self.bus.session_id, turn_id=tv.turn_id, stage=stage, ms=tv.clock.marks[stage],
                            since=tv.clock.since)
        )

    def _error(self, source: str, exc: BaseException, turn_id: int = 0) -> None:
        event = ErrorRaised.of(exc, session_id=self.bus.session_id, turn_id=turn_id, source=f"voice.{source}")
        log.warning("session %s: voice %s failed: %s", self.bus.session_id, source, event.message)
        self.bus.publish(event)

