"""The one place that builds a session: its parts, in order, each given what it uses; torn down in reverse.

::

    Session(persona, bus, record)               bus, history + audit record (redacted), tool context, disclosure
                                                observers on the bus: errors into the record, metrics, traces
     0. recorder    SessionRecorder(session id, persona, record, folder)   personas with ``recording.enabled``;
                      records nothing until the customer consents (:mod:`fay_core.recording`)
     1. agent       Agent(bus, record, answerer, offline, retriever)
                      answerer: LLMAnswerer(bus, persona, llm config, retriever, history, tools) or the offline one;
                      personas with ``vision.enabled`` get a Looker(latest frame, look model): the LLM's
                      ``look_at_camera`` tool, and the offline answerer's "what is this?" (:mod:`fay_core.vision.look`);
                      for a role-play (a scenario with steps) ScenarioRunner(bus, persona, llm) plays the plan
                      (:mod:`fay_core.roleplay.runner`), and ReportWriter stores its report when it ends and on
                      close (:mod:`fay_core.roleplay.reports`)
     2. timeline    AnimationTimeline(bus)      personas with an avatar renderer; its own 50 Hz clock until ...
     3. renderer    renderer.start(timeline, persona.avatar)   the persona's avatar stream
     4. voice       VoicePipeline(bus, persona, voice settings, plugins, disclosure)   when audio arrives or is
                      asked for (:meth:`Assembly.add_voice`); the timeline is then handed its playout and follows
                      it, and the recorder listens to its input and its playout
     5. vision      VisionWatcher(bus, persona.vision, processor)   personas with ``vision.enabled``, when the
                      visitor's camera track arrives (:meth:`Assembly.add_vision`): presence, the greeting on
                      arrival, the voice's ``listen_gate``; the timeline follows its faces (``vision.gaze``); it
                      keeps the latest frame in ``session.frames`` for the Looker
     6. taps        the transport's listeners on the playout and the avatar stream (WebRTC tracks, data channel)

No part receives the session or the runtime: they get the bus, the persona, a settings slice, the engine registry
(:class:`~fay_core.plugins.Plugins`), the knowledge and the record. :meth:`fay_core.session.Session.close` runs
the parts' cleanups in the reverse order of this list, the ``session_ended`` hooks last.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
import weakref
from collections.abc import Callable
from typing import Any

from .record_store import AuditStore
from .avatar.timeline import AnimationTimeline
from .brain.agent import Agent, Answerer
from .brain.history import History
from .brain.llm import LLMConfig
from .brain.llm_answerer import LLMAnswerer
from .brain.offline import OfflineAnswerer
from .brain.rag import Retriever
from .brain.tools import ToolContext
from .bus import Bus
from .disclosure import Disclosure
from .engines import AvatarStream
from .errors import FayError, PluginError
from .events import ErrorRaised, Event
from .knowledge import Knowledge, resolve_embedder
from .metrics import Metrics
from .persona import Persona, localized
from .plugins import Plugins, await_me_maybe
from .record import SessionRecord
from .recording import SessionRecorder
from .roleplay.evidence import EvidenceMatcher
from .roleplay.reports import ReportStore, ReportWriter
from .roleplay.runner import ScenarioRunner
from .session import Session
from .settings import Settings
from .tracing import TurnTracer
from .vision import DEFAULT_GREETING, LatestFrame, Looker, VisionWatcher, look_config
from .voice.pipeline import VoicePipeline

log = logging.getLogger(__name__)


class Assembly:
    """Builds the sessions of one runtime from what they share (settings, plugins, knowledge, audit log)."""

    def __init__(self, settings: Settings, plugins: Plugins, knowledge: Knowledge, audit: AuditStore,
                 metrics: Metrics | None = None, tracer: TurnTracer | None = None,
                 reports: ReportStore | None = None) -> None:
        self.settings = settings
        self.plugins = plugins
        self.knowledge = knowledge
        self.audit = audit
        self._reports = reports or ReportStore(settings.data_dir / "reports")
        self.metrics = metrics  #: counts every session's turns, latency marks, errors and dropped events
        self.tracer = tracer  #: one trace per turn, when OpenTelemetry is configured (:mod:`fay_core.tracing`)
        #: masks personal data in every audit record (the settings' built-ins and the plugins' detectors)
        self.redactor = plugins.redactor()
        #: the role-play sessions' report writers, while their sessions (or a write after their close) hold them
        self.writers: weakref.WeakValueDictionary[str, ReportWriter] = weakref.WeakValueDictionary()
        self._matcher: EvidenceMatcher | None = None

    async def build(self, persona: Persona, session_id: str | None = None) -> Session:
        """A started session for ``persona``: agent, avatar (if any), observers, then the ``session_started`` hooks.

        If any part fails, what was built is torn down and the error propagates.
        """
        sid = session_id or uuid.uuid4().hex
        bus = Bus(sid, on_drop=self.metrics.on_drop if self.metrics is not None else None)
        record = SessionRecord(sid, persona, History(), self.audit, redactor=self.redactor)
        tools = ToolContext(sid, persona.language, str(self.settings.data_dir))
        frames = LatestFrame() if persona.vision.enabled else None
        session = Session(persona, bus, record, self.agent(bus, persona, record, tools, frames), tools,
                          max_message_chars=self.settings.server.max_message_chars)
        session.tenant = persona.tenant
        session.frames = frames
        session.on_close(lambda: self._ended(session))  # first registered: runs last
        try:
            if persona.recording.enabled:
                session.recorder = self.recorder(session)
                session.on_close(session.recorder.close)
            bus.subscribe(record.error, ErrorRaised, name="session.errors", drop_stale=False)
            if self.metrics is not None:
                self.metrics.observe(bus, persona)
            if self.tracer is not None:
                self.tracer.observe(bus, persona)
            if self.plugins.hook_has_impls("event_observed"):
                observe = functools.partial(self._observe, session)
                bus.subscribe(observe, name="plugins.event_observed", drop_stale=False)
            session.agent.attach()
            if isinstance(session.agent.answerer, ScenarioRunner):
                self._add_scenario(session, session.agent.answerer)
            if persona.avatar.renderer not in ("", "none"):
                await self._add_avatar(session)
            for result in self.plugins.pm.hook.session_started(session=session):
                await await_me_maybe(result)
        except BaseException:
            await session.close("failed to start")
            raise
        return session

    # --- the parts --------------------------------------------------------------------------------------

    def agent(self, bus: Bus, persona: Persona, record: SessionRecord, tools: ToolContext,
              frames: LatestFrame | None = None) -> Agent:
        """The agent of a session: the LLM answerer if an LLM is configured, else the offline one; with the
        camera's ``frames``, both can look at what the visitor shows."""
        retriever = self.retriever(persona)
        looker = self.looker(persona, frames) if frames is not None else None
        offline = OfflineAnswerer(bus, persona, retriever, looker)
        config = LLMConfig.resolve(self.settings.llm, persona)
        answerer: Answerer = offline
        runner = ScenarioRunner(bus, persona, matcher=self.matcher) if persona.scenario.steps else None
        if config is not None:
            answerer = LLMAnswerer(
                bus, persona, config, retriever, record.history,
                tools=[*(self.plugins.tools_for(persona.tools) if persona.tools else []),
                       *([looker.tool()] if looker is not None else [])],
                tool_context=tools, max_tool_steps=self.settings.knowledge.max_tool_steps,
                instructions=runner.instructions if runner is not None else None,
            )
        if runner is not None:  # a role-play: the runner plays the plan, through the LLM if there is one
            runner.llm = answerer if config is not None else None
            answerer = runner
        return Agent(bus, record, answerer, offline, retriever)

    def looker(self, persona: Persona, frames: LatestFrame) -> Looker:
        """The session's look at what the visitor shows the camera (``vision.look_model``; none: it says it
        cannot read documents here)."""
        vision = self.settings.vision
        return Looker(frames, look_config(vision, self.settings.llm, persona), persona,
                      max_age_s=vision.look_max_age_s)

    def matcher(self) -> EvidenceMatcher | None:
        """The role-play phrase matcher (the knowledge base's embedder), made once; ``None`` if it cannot be."""
        if self._matcher is None:
            try:
                self._matcher = EvidenceMatcher(resolve_embedder(self.settings, self.plugins))
            except FayError as exc:
                log.warning("role-play steps are matched by their keywords only: %s", exc)
                return None
        return self._matcher

    def reports(self) -> ReportStore:
        """Where role-play reports are stored: ``<data_dir>/reports/<tenant>/<session_id>.json``, or PostgreSQL's
        ``fay_reports`` with ``audit.url`` (:mod:`fay_core.record_store`)."""
        return self._reports

    def _add_scenario(self, session: Session, runner: ScenarioRunner) -> None:
        """Give a role-play session its runner and its report, written when the scenario ends and on close."""
        session.scenario = runner
        writer = ReportWriter(session.bus, session.persona, session.history, lambda: session.tenant, runner,
                              self.reports(), lambda: resolve_embedder(self.settings, self.plugins))
        writer.attach()
        session.report = writer
        self.writers[session.id] = writer
        session.on_close(writer.close)

    def recorder(self, session: Session) -> SessionRecorder:
        """The session's consent-gated recorder, writing under ``<data_dir>/recordings/<tenant>/``."""
        folder = self.settings.data_dir / "recordings"
        return SessionRecorder(session.id, session.persona, session.record, lambda: folder,
                               lambda: session.tenant)

    def retriever(self, persona: Persona) -> Retriever:
        """The persona's knowledge, as a session searches it."""
        return Retriever(persona, self.knowledge, self.settings.knowledge)

    def voice(self, bus: Bus, persona: Persona, disclosure: Disclosure | None = None) -> VoicePipeline:
        """A voice pipeline (not started) with the configured engines; it speaks ``disclosure`` first."""
        return VoicePipeline(bus, persona, self.settings.voice, self.plugins, disclosure=disclosure)

    async def add_voice(self, session: Session) -> VoicePipeline:
        """Give ``session`` its voice (idempotent): start it, and hand its playout to the avatar timeline.

        Raises :class:`~fay_core.errors.FayError` if no engine can listen or speak; the session goes on in text.
        """
        if session.voice is not None:
            return session.voice
        voice = self.voice(session.bus, session.persona, session.disclosure)
        await voice.start()
        session.voice = voice
        session.on_close(voice.close)
        if session.timeline is not None:
            session.timeline.follow(voice.playout)
        self._gate(session)
        recorder = session.recorder
        if recorder is not None:
            playout = voice.playout
            on_avatar = functools.partial(recorder.on_avatar, rate=playout.sample_rate)
            voice.add_input_listener(recorder.on_customer)
            playout.add_listener(on_avatar)

            def detach() -> None:
                voice.remove_input_listener(recorder.on_customer)
                playout.remove_listener(on_avatar)

            session.on_close(detach)
        return voice

    def add_vision(self, session: Session, on_leave: Callable[[str], None] | None = None) -> VisionWatcher:
        """Watch ``session``'s camera frames (idempotent; the persona must have ``vision.enabled``).

        ``on_leave(reason)`` ends the session ``vision.leave_after_s`` after the visitor left. Raises
        :class:`~fay_core.errors.FayError` if no vision processor can run; the session goes on without.
        """
        if session.vision is not None:
            return session.vision
        config = session.persona.vision
        processor = self.plugins.pick("vision", config.processor)
        greet = functools.partial(self._greet, session) if config.greet_on_arrival else None
        watcher = VisionWatcher(session.bus, config, processor, on_arrival=greet, on_leave=on_leave,
                                frames=session.frames)
        watcher.start()
        session.vision = watcher
        session.on_close(watcher.stop)
        self._gate(session)
        return watcher

    @staticmethod
    def _gate(session: Session) -> None:
        """With ``vision.listen_only_when_present``, the voice listens only while the watcher sees a visitor."""
        watcher, voice = session.vision, session.voice
        if watcher is not None and voice is not None and session.persona.vision.listen_only_when_present:
            voice.listen_gate = lambda: watcher.present

    @staticmethod
    def _greet(session: Session) -> None:
        persona = session.persona
        if session.closed:
            return
        text = localized(persona.greeting or None, persona.language, DEFAULT_GREETING)
        session.last_active = time.monotonic()
        session.agent.greet(text)

    async def _add_avatar(self, session: Session) -> AvatarStream:
        persona = session.persona
        avatar = persona.avatar
        gaze = persona.vision.enabled and persona.vision.gaze
        timeline = AnimationTimeline(session.bus, gaze=gaze, **_timeline_options(avatar.options))
        timeline.start()
        session.timeline = timeline
        session.on_close(timeline.stop)
        renderer = self.plugins.engine("renderer", avatar.renderer)
        try:
            stream: AvatarStream = await renderer.start(timeline, avatar)
        except PluginError as exc:
            raise PluginError(f"persona {persona.id!r}: {exc}") from None
        session.avatar = stream
        session.on_close(stream.stop)
        return stream

    # --- hooks ------------------------------------------------------------------------------------------

    async def _observe(self, session: Session, event: Event) -> None:
        for result in self.plugins.pm.hook.event_observed(session=session, event=event):
            await await_me_maybe(result)

    async def _ended(self, session: Session) -> None:
        for result in self.plugins.pm.hook.session_ended(session=session):
            await await_me_maybe(result)


def _timeline_options(options: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "head_motion_deg" in options:
        out["head_amplitude_deg"] = float(options["head_motion_deg"])
    return out
