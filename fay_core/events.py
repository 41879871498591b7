"""Typed events that flow on a session's bus.

Events are frozen dataclasses named ``<Actor><PastVerb>`` (or ``<Thing>``). Every event carries the
``session_id`` and ``turn_id`` it belongs to and a monotonic timestamp ``ts`` (``time.monotonic()``).
``turn_id`` 0 means "not tied to a turn" (audio in, errors, state); events of an older turn than the bus's
current one are stale and dropped before delivery to subscribers that ask for it.

Urgent events (``URGENT = True``: interruptions, errors, speech start) overtake queued ordered events.
Pydantic is used only at the edges (YAML, HTTP, data channel); inside, these dataclasses are all there is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .errors import FayError


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of all events."""

    URGENT: ClassVar[bool] = False

    session_id: str = ""
    turn_id: int = 0
    ts: float = field(default_factory=time.monotonic)


@dataclass(frozen=True, slots=True, kw_only=True)
class UrgentEvent(Event):
    """Base of events that overtake queued ordered events."""

    URGENT: ClassVar[bool] = True


# --- values carried by events -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Citation:
    """A source an answer relies on; ``index`` is the ``[n]`` marker used in the answer text."""

    index: int
    source: str
    title: str = ""
    section: str = ""
    chunk_id: str = ""
    score: float = 0.0
    page: int | None = None
    text: str = ""

    def to_json(self) -> dict[str, Any]:
        """The citation as every wire and the audit log carry it: all but ``text`` (the chunk, which can be long)."""
        return {"index": self.index, "source": self.source, "title": self.title, "section": self.section,
                "page": self.page, "chunk_id": self.chunk_id, "score": self.score}


@dataclass(frozen=True, slots=True)
class WordTiming:
    """A word (or Chinese character group) and when it is heard, in ms from the start of its audio chunk."""

    word: str
    start_ms: float
    end_ms: float


# --- audio and speech in ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AudioReceived(Event):
    """Microphone audio: 16-bit little-endian mono PCM at ``sample_rate``; ``pts`` in seconds of stream time."""

    pcm: bytes
    sample_rate: int = 16000
    pts: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class UserStartedSpeaking(UrgentEvent):
    """VAD heard speech start; ``onset`` is the monotonic time the speech began (pre-roll included)."""

    onset: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class UserStoppedSpeaking(UrgentEvent):
    """VAD heard speech end; ``duration_ms`` is the length of the utterance."""

    duration_ms: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class TranscriptPartial(Event):
    """An interim transcript while the user is still speaking."""

    text: str
    language: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TranscriptFinal(Event):
    """The final transcript of one utterance."""

    text: str
    language: str = ""
    audio_ms: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class UserTextReceived(Event):
    """A user message to answer: typed text, or a final transcript (``source="voice"``)."""

    text: str
    source: str = "text"


# --- the camera (personas with ``vision.enabled``; see :mod:`fay_core.vision`) ----------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CameraFrameReceived(Event):
    """A camera frame, decoded at the persona's ``vision.fps``: ``image`` is an ``(height, width, 3)`` uint8 BGR
    array (at most :data:`fay_core.transport.tracks.MAX_WIDTH` wide); ``pts`` in seconds of the video stream.
    Held only while processors look at it: nothing of the video is stored."""

    image: Any = field(repr=False)
    pts: float = 0.0


@dataclass(frozen=True, slots=True)
class Face:
    """A face in a frame: its centre ``x``, ``y`` in -1..1 of the frame (left/top -1, as the camera sees it, not
    mirrored), ``size`` its width as a fraction of the frame's, ``score`` the detector's confidence (0..1)."""

    x: float
    y: float
    size: float
    score: float = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class FaceTracked(Event):
    """A frame was looked at: the largest face in it (``None`` when there is none), at video time ``pts``."""

    face: Face | None
    pts: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class UserArrived(Event):
    """Someone stepped up: a face was seen for ``vision.arrive_s``; ``face`` where, at video time ``pts``."""

    face: Face
    pts: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class UserLeft(Event):
    """The visitor walked away: no face for ``vision.absent_s``; ``stayed_s`` how long they were there."""

    pts: float = 0.0
    stayed_s: float = 0.0


# --- the agent ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentDisclosed(Event):
    """The customer was told that an AI serves them (the persona's disclosure), ``via`` a channel: ``stream`` (the
    first answer stream), ``webrtc`` (the data channel's ``ready``), ``voice`` (spoken) or ``cli``."""

    text: str
    language: str = ""
    via: str = ""



@dataclass(frozen=True, slots=True, kw_only=True)
class AgentThinking(Event):
    """The agent started working on a turn."""

    question: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentTextDelta(Event):
    """A piece of the answer text, in order."""

    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentToolCalled(Event):
    """The agent called a tool."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    call_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentToolReturned(Event):
    """A tool call finished; ``error`` is set instead of ``result`` when it failed."""

    name: str
    call_id: str = ""
    result: str = ""
    error: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentTurnFinished(Event):
    """The whole answer of a turn. ``answered_by`` names the answerer (``llm``, ``offline``, ``fallback``);
    ``declined``: it found nothing to ground an answer on and offered a colleague."""

    text: str
    citations: tuple[Citation, ...] = ()
    answered_by: str = ""
    interrupted: bool = False
    error: str = ""
    declined: bool = False


# --- speech out and the avatar --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeechScheduled(Event):
    """The playout queued a chunk of answer audio (16-bit mono PCM) to start at output time ``pts``.

    ``words`` are the TTS word timings relative to the chunk's start. Published by the playout clock when the
    TTS hands it a chunk; the avatar timeline analyses it into a mouth track.
    """

    pcm: bytes
    sample_rate: int
    text: str = ""
    words: tuple[WordTiming, ...] = ()
    pts: float = 0.0
    final: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class AvatarStartedSpeaking(Event):
    """The first audio of a turn left the playout clock."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AvatarStoppedSpeaking(Event):
    """Playout of a turn's audio ended (``interrupted`` when cut by barge-in)."""

    interrupted: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class WordPlayed(Event):
    """A word of the answer has been played to the user (follows word timings against the playout clock)."""

    word: str
    pts: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class PlayoutPaused(UrgentEvent):
    """Playout paused at output time ``pts`` (the user may be barging in); silence is sent meanwhile."""

    pts: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class PlayoutResumed(UrgentEvent):
    """Playout resumed at ``pts`` (a false interruption): audio scheduled after the pause plays ``shift_s`` later."""

    pts: float = 0.0
    shift_s: float = 0.0


# --- role-play scenarios -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ScenarioStepChanged(Event):
    """A role-play scenario moved to step ``index`` (0-based) of ``total`` (see :mod:`fay_core.roleplay.runner`).

    ``reason``: ``start``, ``aim_met``, ``budget`` (its turns were used), or ``branch`` (a ``next:`` condition
    chose it); ``elapsed_s`` since the scenario started; ``time_limit_s`` if it has one.
    """

    step_id: str
    index: int
    total: int
    aim: str = ""
    reason: str = ""
    elapsed_s: float = 0.0
    time_limit_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ScenarioEnded(Event):
    """A role-play scenario ended: ``reason`` is ``completed`` (its last step was done, or a branch went to ``end``)
    or ``time_limit``; ``turn_id`` 0 when the time limit passed between turns. ``closing`` is the avatar's last line
    (said in the ending turn, or at the next one after a time limit)."""

    reason: str
    elapsed_s: float = 0.0
    steps_visited: tuple[str, ...] = ()
    closing: str = ""


# --- control ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Interrupted(UrgentEvent):
    """The user barged in: work of ``turn_id`` is cancelled; ``played_text`` is what the user actually heard."""

    reason: str = "barge-in"
    played_text: str = ""
    onset: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorRaised(UrgentEvent):
    """Something failed; the session goes on unless ``fatal``. ``source`` names the component."""

    source: str
    message: str
    error_type: str = ""
    fatal: bool = False

    @classmethod
    def of(
        cls, exc: BaseException, *, session_id: str, source: str, turn_id: int = 0, fatal: bool = False
    ) -> ErrorRaised:
        """The event that reports ``exc``: the one way Fay turns an exception into an ``ErrorRaised``.

        A :class:`~fay_core.errors.FayError`'s message is written for people and is used as it is; any other
        exception is shown as ``Type: message``.
        """
        message = str(exc) if isinstance(exc, FayError) else f"{type(exc).__name__}: {exc}"
        return cls(session_id=session_id, turn_id=turn_id, source=source, message=message,
                   error_type=type(exc).__name__, fatal=fatal)


@dataclass(frozen=True, slots=True, kw_only=True)
class LatencyMeasured(Event):
    """A latency mark of a turn: ``stage`` (e.g. ``llm_first_token``) reached ``ms`` after ``since``."""

    stage: str
    ms: float
    since: str = "turn_start"


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionClosed(UrgentEvent):
    """The session is closing; components should stop."""

    reason: str = ""


#: deprecated name of :class:`SpeechScheduled` (it is published by the playout, not the TTS); removed in 0.3
SpeechSynthesized = SpeechScheduled

__all__ = [
    "AgentTextDelta",
    "AgentThinking",
    "AgentToolCalled",
    "AgentToolReturned",
    "AgentTurnFinished",
    "AudioReceived",
    "AvatarStartedSpeaking",
    "AvatarStoppedSpeaking",
    "CameraFrameReceived",
    "Citation",
    "ErrorRaised",
    "Event",
    "Face",
    "FaceTracked",
    "Interrupted",
    "LatencyMeasured",
    "PlayoutPaused",
    "PlayoutResumed",
    "ScenarioEnded",
    "ScenarioStepChanged",
    "SessionClosed",
    "SpeechScheduled",
    "SpeechSynthesized",
    "TranscriptFinal",
    "TranscriptPartial",
    "UrgentEvent",
    "UserArrived",
    "UserLeft",
    "UserStartedSpeaking",
    "UserStoppedSpeaking",
    "UserTextReceived",
    "WordPlayed",
    "WordTiming",
]
