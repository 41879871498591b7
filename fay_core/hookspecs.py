"""Fay's plugin hooks.

A plugin is a module or object with functions decorated by :data:`fay_core.hookimpl`, exposed through the
``fay`` entry-point group in its ``pyproject.toml``::

    [project.entry-points.fay]
    my_plugin = "my_package.plugin"

Registration hooks are synchronous and hand over factories or objects whose methods are ``async``. Factories are
called lazily, with the plugin's validated settings (or ``None`` if it registered no settings model), so that no
model loads at import or start-up. Lifecycle hooks may return a value or an awaitable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:
    import click

    from .redaction import Detector

hookspec = pluggy.HookspecMarker("fay")
hookimpl = pluggy.HookimplMarker("fay")


class RegisterSettings(Protocol):
    """The ``register`` of :func:`register_settings`."""

    def __call__(self, name: str, model: type[Any], /) -> None: ...


class RegisterEngine(Protocol):
    """The ``register`` of the engine hooks (ASR, TTS, VAD, turn detectors, renderers, embedders, rerankers).

    :param name: the engine's name, as settings and personas write it (``whisper``, ``piper``).
    :param factory: called once, on first use, with the plugin's validated settings (or with nothing if it takes
        no parameter); returns the engine.
    :param settings: the plugin settings section handed to the factory.
    :param languages: languages the engine handles (``en``, ``zh``); empty: any language.
    :param online: the engine needs the internet (``auto`` prefers offline engines when told to).
    :param priority: ``auto`` tries higher priorities first (Fay's built-ins use 0 to 100).
    """

    def __call__(
        self,
        name: str,
        factory: Callable[..., Any],
        settings: str | None = None,
        *,
        languages: Sequence[str] = (),
        online: bool = False,
        priority: int = 0,
    ) -> None: ...


class RegisterLoader(Protocol):
    """The ``register`` of :func:`register_knowledge_loaders`."""

    def __call__(self, suffixes: tuple[str, ...] | str, loader: Callable[[Path, str], Iterable[Any]], /) -> None: ...


class RegisterTool(Protocol):
    """The ``register`` of :func:`register_tools`: a langchain ``BaseTool`` or a typed, documented function."""

    def __call__(self, tool: Any, /) -> None: ...


@hookspec
def register_settings(register: RegisterSettings) -> None:
    """Declare this plugin's settings model, validated from ``plugins.<name>`` at start-up.

    :param register: ``register(name: str, model: type[pydantic.BaseModel])``. Bad values stop start-up with a
        message naming ``plugins.<name>.<field>`` and its ``FAY_PLUGINS__<NAME>__<FIELD>`` variable.
    """


@hookspec
def register_asr_engines(register: RegisterEngine) -> None:
    """Register speech-to-text engines.

    :param register: ``register(name: str, factory: Callable[[settings | None], ASREngine], settings: str | None)``;
        ``settings`` names the plugin settings section handed to the factory.
    """


@hookspec
def register_tts_engines(register: RegisterEngine) -> None:
    """Register text-to-speech engines.

    :param register: ``register(name: str, factory: Callable[[settings | None], TTSEngine], settings: str | None)``.
    """


@hookspec
def register_vad(register: RegisterEngine) -> None:
    """Register voice activity detectors.

    :param register: ``register(name: str, factory: Callable[[settings | None], VADEngine], settings: str | None)``.
    """


@hookspec
def register_turn_detectors(register: RegisterEngine) -> None:
    """Register end-of-turn models: they tell a finished turn from a pause mid-sentence (``voice.turn.engine``).

    The built-in one is Smart Turn v3 (plugin ``smart_turn``). ``auto`` takes the highest priority that can run
    here (its factory raising :class:`~fay_core.errors.EngineUnavailable` when its model is missing); if none can,
    or the chosen one fails or is slow, the voice pipeline ends turns by the silence rule alone
    (``voice.vad.min_silence_ms``) and logs one warning.

    :param register: ``register(name: str, factory: Callable[[settings | None], TurnDetector], settings: str | None,
        languages=(...))``; see :class:`fay_core.engines.TurnDetector`.
    """


@hookspec
def register_avatar_renderers(register: RegisterEngine) -> None:
    """Register avatar renderers, chosen per persona by ``avatar.renderer``.

    :param register: ``register(name: str, factory: Callable[[settings | None], AvatarRenderer],
        settings: str | None)``.
    """


@hookspec
def register_vision_processors(register: RegisterEngine) -> None:
    """Register vision processors: what a camera frame shows, for personas with ``vision.enabled``.

    A processor gets each frame the persona's ``vision.fps`` lets through, in a worker thread (never on the event
    loop), and returns the faces in it (:class:`fay_core.engines.VisionProcessor`). Presence (``UserArrived`` /
    ``UserLeft``) and gaze are built on those by Fay. A processor must not infer emotions or identify people.

    :param register: ``register(name: str, factory: Callable[[settings | None], VisionProcessor],
        settings: str | None)``; ``vision.processor: auto`` takes the highest ``priority`` that can run.
    """


@hookspec
def register_embedders(register: RegisterEngine) -> None:
    """Register text embedders for the knowledge base.

    :param register: ``register(name: str, factory: Callable[[settings | None], Embedder], settings: str | None)``.
    """


@hookspec
def register_rerankers(register: RegisterEngine) -> None:
    """Register rerankers that reorder retrieved chunks for a query.

    :param register: ``register(name: str, factory: Callable[[settings | None], Reranker], settings: str | None)``.
    """


@hookspec
def register_knowledge_loaders(register: RegisterLoader) -> None:
    """Register loaders that turn files into knowledge-base documents.

    :param register: ``register(suffixes: tuple[str, ...], loader: Callable[[Path], Iterable[Document]])``.
    """


@hookspec
def register_tools(register: RegisterTool) -> None:
    """Register tools the agent may call (a persona lists the ones it allows).

    :param register: ``register(tool)`` with a langchain ``BaseTool``, or a typed, documented function (its
        signature becomes the arguments' schema and its docstring the description).
    """


class RegisterRedactor(Protocol):
    """The ``register`` of :func:`register_redactors`: a :class:`fay_core.redaction.Detector`."""

    def __call__(self, detector: Detector, /) -> None: ...


@hookspec
def register_redactors(register: RegisterRedactor) -> None:
    """Register detectors of personal data that Fay masks in its audit log, server log and traces.

    The built-in detectors (cards, phones, Chinese resident IDs, e-mail, IBAN; setting ``redaction.kinds``) are
    always on; a plugin adds the kinds its bank needs (passport numbers, customer numbers). Tools and the
    session's history still see the real values.

    :param register: ``register(detector)`` with an object that has a ``kind`` (the mask's name, ``[kind]``) and
        a fast, synchronous ``find(text) -> Iterable[Span]``.
    """


@hookspec(firstresult=True)
def authenticate_customer(token: str) -> str | None:
    """Turn a customer token (issued by the bank's own sign-in) into a customer id, or ``None`` if not valid.

    The server calls it for ``POST /api/sessions {"customer_token": ...}`` and puts the id on
    ``session.customer_id``; tools receive it as an injected argument, never from the LLM. The first plugin that
    returns an id wins (``firstresult``).

    :param token: the token the client sent; treat it as untrusted input.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add sub-commands to the ``fay`` command line.

    :param cli: the root :class:`click.Group`.
    """


@hookspec
def startup(app: Any) -> Any:
    """Called once when the server starts. May return an awaitable.

    :param app: the :class:`fay_core.app.Fay` runtime (settings, plugins, sessions).
    """


@hookspec
def session_started(session: Any) -> Any:
    """Called when a session starts, before its greeting. May return an awaitable.

    :param session: the :class:`fay_core.session.Session`.
    """


@hookspec
def session_ended(session: Any) -> Any:
    """Called after a session closed. May return an awaitable.

    :param session: the :class:`fay_core.session.Session`.
    """


@hookspec
def event_observed(session: Any, event: Any) -> Any:
    """Called for every event on every session's bus (only wired when some plugin implements it).

    Keep it cheap: it runs in the session's observer task. May return an awaitable.

    :param session: the session the event belongs to.
    :param event: the :class:`fay_core.events.Event`.
    """
