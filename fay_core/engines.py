"""Engine contracts: what a plugin's ASR, TTS, VAD, turn detector, embedder, vision processor or avatar renderer
must provide.

Engines are registered by factory (see :mod:`fay_core.hookspecs`) so that nothing heavy loads until a session
needs it. Factories take the validated settings of their plugin (or ``None``) and return an object that satisfies
one of these protocols; a factory whose package or model is missing raises
:class:`~fay_core.errors.EngineUnavailable` at once, so that ``auto`` moves on to the next candidate. Methods that
do I/O or heavy compute are ``async``; engines run CPU-bound work in a thread or worker pool so the event loop
stays responsive.

Optional abilities are declared here too, each a ``runtime_checkable`` protocol that Fay tests with
``isinstance``: :class:`SupportsWarmUp`, :class:`ReportsBusy`, :class:`ChecksVoice`, :class:`ChecksReachability`,
:class:`EmbedsQueries` and :class:`ScoresBatches`. An engine has an ability by having its method or attribute; it
declares nothing else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .events import Face, WordTiming

if TYPE_CHECKING:
    import numpy as np
    from .persona import AvatarConfig


@dataclass(frozen=True, slots=True)
class Transcript:
    """What an ASR engine heard."""

    text: str
    language: str = ""
    confidence: float | None = None


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """A piece of synthesized speech: 16-bit mono PCM and the words it holds (times relative to the chunk)."""

    pcm: bytes
    sample_rate: int
    words: tuple[WordTiming, ...] = ()
    text: str = ""


@runtime_checkable
class ASREngine(Protocol):
    """Speech to text. One engine object is shared by all sessions; it must be safe to call concurrently."""

    name: str

    async def transcribe(self, pcm: bytes, sample_rate: int, *, language: str | None = None) -> Transcript:
        """Transcribe 16-bit mono PCM. ``language`` is ``zh``, ``en`` or ``None`` (detect)."""
        ...


@runtime_checkable
class TTSEngine(Protocol):
    """Text to speech, streamed."""

    name: str

    def synthesize(
        self, text: str, *, voice: str | None = None, language: str = "en", rate: float = 1.0
    ) -> AsyncIterator[AudioChunk]:
        """Yield audio for ``text`` as it is produced. Raise :class:`~fay_core.errors.EngineError` on failure."""
        ...


@runtime_checkable
class VADStream(Protocol):
    """Per-session voice activity state."""

    frame_samples: int
    sample_rate: int

    def probability(self, frame: bytes) -> float:
        """Speech probability of one frame of ``frame_samples`` 16-bit samples."""
        ...

    def reset(self) -> None: ...


@runtime_checkable
class VADEngine(Protocol):
    """Voice activity detection; makes one stream per session (the model itself is shared)."""

    name: str

    def create_stream(self, sample_rate: int = 16000) -> VADStream: ...


@runtime_checkable
class ScoresBatches(Protocol):
    """A VAD engine that scores one window of many streams in one model call (``voice.vad.batch``).

    Every session's window of a 32 ms round then costs one call instead of one each
    (:class:`~fay_core.voice.vad_batch.VADBatcher`), run in a worker thread off the event loop.
    """

    def batches(self) -> bool:
        """Whether batched calls work here (the model loads as a batch, and agrees with the per-stream calls).
        May load the model; called once, off the event loop."""
        ...

    def probabilities(self, streams: Sequence[VADStream], frames: Sequence[bytes]) -> list[float]:
        """Speech probability of ``frames[i]`` in ``streams[i]``, advancing each stream's state exactly as its
        own ``probability(frames[i])`` would (same result). The streams are distinct and were made by this
        engine; called from a worker thread, never while another call uses one of them. On failure it raises
        and leaves every stream's state as it was."""
        ...


@runtime_checkable
class TurnDetector(Protocol):
    """End of turn from the audio: has the user finished, or only paused? (``voice.turn.engine``; Smart Turn).

    The voice pipeline asks when the VAD hears a pause, with the utterance so far; the answer decides whether the
    turn ends after a short silence or the pipeline keeps listening (see :mod:`fay_core.voice.turns`). One object
    is shared by every session: it must be safe to call concurrently and run its model off the event loop (a
    thread pool of its own). A detector that raises, or answers later than the silence rule would have ended the
    turn, is ignored for that pause (the silence rule decides).
    """

    name: str

    async def end_of_turn(self, pcm: bytes, sample_rate: int, *, language: str | None = None) -> float:
        """Probability (0..1) that the speech in ``pcm`` (16-bit mono, ending at the pause) is a complete turn.

        ``language`` is the session's (``en``, ``zh``) or ``None``; the caller applies its own threshold.
        """
        ...


@runtime_checkable
class Embedder(Protocol):
    """Text embeddings for the knowledge base."""

    name: str
    dim: int

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...


@runtime_checkable
class VisionProcessor(Protocol):
    """Finds the faces in camera frames (``register_vision_processors``). One object is shared by all sessions.

    :meth:`faces` is called in a worker thread, at most once at a time per session (frames that come while it
    works are dropped), so it may be synchronous and CPU-bound; it must be thread-safe across sessions. It
    reports where faces are and how large, nothing about who they are or what they feel.
    """

    name: str

    def faces(self, image: np.ndarray) -> Sequence[Face]:
        """The faces in ``image`` (``(height, width, 3)`` uint8 BGR), largest first; empty if none."""
        ...


# --- optional abilities ---------------------------------------------------------------------------------


@runtime_checkable
class SupportsWarmUp(Protocol):
    """An engine that can load its model ahead of the first request (ASR, TTS, ...).

    Fay awaits ``warm_up()`` when a session's voice starts and when ``fay run`` prepares the default persona, so
    that the first visitor does not wait for a model to load. It must be idempotent and run its blocking work in
    the engine's pool. A TTS engine loads its default voice.
    """

    async def warm_up(self) -> None: ...


@runtime_checkable
class ReportsBusy(Protocol):
    """An engine that says when it is saturated (every worker taken).

    While ``busy`` is true Fay skips optional work on it (partial transcripts while the user speaks), so that
    the work that matters (the final transcript) does not queue behind it.
    """

    @property
    def busy(self) -> bool: ...


@runtime_checkable
class ChecksVoice(Protocol):
    """A TTS engine that recognises its own voice names (``en-US-AriaNeural``, ``en_US-joe-medium``).

    A persona names one voice (``voice.name``) for its whole fallback chain; an engine is handed that name only
    when ``accepts_voice(name)`` is true, and speaks its default voice for the language otherwise. Engines without
    this ability are always handed the persona's voice name.
    """

    def accepts_voice(self, voice: str) -> bool: ...


@runtime_checkable
class ChecksReachability(Protocol):
    """An online engine (registered with ``online=True``) that can tell cheaply whether its service answers.

    With ``voice.tts.online: auto``, ``voice.engine: auto`` takes an online TTS engine only if ``reachable()`` is
    true. Keep it quick (a DNS lookup with a short timeout, not a request), cache the answer for a few minutes, and
    never raise. Online engines without it are taken as reachable: they should then fail fast when they are not.
    """

    async def reachable(self) -> bool: ...


@runtime_checkable
class EmbedsQueries(Protocol):
    """An :class:`Embedder` that embeds several queries in one batch (faster than ``embed_query`` each).

    The knowledge base uses it for FAQ phrasings, which are matched as queries on both sides (e5 models want
    ``query:`` there). Returns one row per text, ``(len(texts), dim)``: a float32 array or a list of lists.
    """

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray | list[list[float]]: ...


@dataclass(frozen=True, slots=True)
class RendererInfo:
    """What a renderer produces, for the web client.

    ``kind`` is ``data`` (binary parameter frames, handed to the stream's listeners and sent unchanged on the
    data channel) or ``video`` (a video track added to the peer connection). ``viewer`` names the
    web module ``/web/avatars/<viewer>.js`` that shows it (the renderer's name if empty).
    """

    name: str
    kind: str
    viewer: str = ""
    options: dict[str, Any] = field(default_factory=dict)


#: an avatar stream's listener: ``listener(payload, pts, turn_id)`` for each binary message of a data renderer
PayloadListener = Callable[[bytes, float, int], None]


class Timeline(Protocol):
    """A session's lip-sync/animation timeline as renderers see it (:class:`fay_core.avatar.AnimationTimeline`).

    Its listeners are called synchronously with an :class:`fay_core.avatar.AvatarState` for every frame the
    playout clock releases (the PTS of the audio being heard); they must be cheap.
    """

    bus: Any

    def add_listener(self, listener: Callable[[Any], None]) -> None: ...

    def remove_listener(self, listener: Callable[[Any], None]) -> None: ...


@runtime_checkable
class AvatarStream(Protocol):
    """A renderer running for one session (``session.avatar``; see :mod:`fay_core.avatar`)."""

    info: RendererInfo
    #: an aiortc ``MediaStreamTrack`` (kind ``video``) for video renderers, ``None`` for data renderers
    video_track: Any

    def header(self) -> bytes | None:
        """For data renderers: the stream header to send first on a newly opened data channel."""
        ...

    def add_listener(self, listener: PayloadListener) -> None:
        """Hand every binary message (headers and frames) to ``listener``; video renderers send none."""
        ...

    def remove_listener(self, listener: PayloadListener) -> None: ...

    async def stop(self) -> None:
        """Stop producing frames (called when the session closes)."""
        ...


@runtime_checkable
class AvatarRenderer(Protocol):
    """Turns a session's lip-sync/animation timeline into frames. One object is shared by all sessions."""

    info: RendererInfo

    async def start(self, timeline: Timeline, avatar: AvatarConfig) -> AvatarStream:
        """Start rendering ``timeline`` with the persona's ``avatar`` block (model, options): return the stream.

        Raise :class:`~fay_core.errors.PluginError` for bad ``avatar.options``; the assembly names the persona.
        """
        ...
