"""Engine contracts: what a plugin's ASR, TTS, VAD, embedder or avatar renderer must provide.

Engines are registered by factory (see :mod:`fay_core.hookspecs`) so that nothing heavy loads until a session
needs it. Factories take the validated settings of their plugin (or ``None``) and return an object that satisfies
one of these protocols. Methods that do I/O or heavy compute are ``async``; engines run CPU-bound work in a
thread or worker pool so the event loop stays responsive.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .events import WordTiming

if TYPE_CHECKING:
    import numpy as np


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
class Embedder(Protocol):
    """Text embeddings for the knowledge base."""

    name: str
    dim: int

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...


@runtime_checkable
class EmbedsQueries(Protocol):
    """An embedder that embeds many texts as queries at once (e5 wants ``query:`` on both sides of a question
    match): the knowledge base embeds FAQ phrasings with it, in batches."""

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True, slots=True)
class RendererInfo:
    """What a renderer produces, for the web client.

    ``kind`` is ``data`` (binary parameter frames, published as :class:`~fay_core.events.AvatarFrame` and sent
    unchanged on the data channel) or ``video`` (a video track added to the peer connection). ``viewer`` names the
    web module ``/web/avatars/<viewer>.js`` that shows it (the renderer's name if empty).
    """

    name: str
    kind: str
    viewer: str = ""
    options: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class AvatarStream(Protocol):
    """A renderer running for one session, found as ``session.avatar`` (see :mod:`fay_core.avatar`)."""

    info: RendererInfo
    #: an aiortc ``MediaStreamTrack`` (kind ``video``) for video renderers, ``None`` for data renderers
    video_track: Any

    def header(self) -> bytes | None:
        """For data renderers: the stream header to send first on a newly opened data channel."""
        ...

    async def stop(self) -> None:
        """Stop producing frames (called when the session closes)."""
        ...


@runtime_checkable
class AvatarRenderer(Protocol):
    """Turns the session's lip-sync/animation timeline into frames. One object is shared by all sessions."""

    info: RendererInfo

    async def start(self, session: Any) -> AvatarStream:
        """Start rendering for ``session``: return its per-session stream (frames follow its playout clock)."""
        ...
