"""The Fay runtime: settings, plugins, personas, the audit log, and the live sessions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from .assembly import Assembly
from .errors import (
    ClusterUnavailable,
    NodeBusy,
    PersonaError,
    ServerDraining,
    SessionLimit,
    UnknownPersona,
    UnknownSession,
)
from .knowledge import Knowledge
from .load import LoopMonitor
from .metrics import Metrics
from .persona import Persona, PersonaStore
from .plugins import Plugins, await_me_maybe
from .record_store import open_records
from .redaction import log_tag
from .session import Session
from .settings import Settings, load_settings
from .tracing import TurnTracer

if TYPE_CHECKING:
    from .cluster import Cluster

log = logging.getLogger(__name__)


class Fay:
    """Everything a server (or ``fay chat``) needs. Use as ``async with Fay() as fay: ...``."""

    def __init__(self, settings: Settings | None = None, plugins: Plugins | None = None) -> None:
        self.settings = settings or load_settings()
        self.plugins = plugins or Plugins(self.settings).load()
        self.plugins.check_settings()
        self.personas = PersonaStore(self.settings.personas_dir)
        #: the audit log and the role-play reports: files under data_dir, or PostgreSQL (``audit.url``)
        self.records = open_records(self.settings)
        self.audit = self.records.audit
        self.knowledge = Knowledge(self.settings, self.plugins)
        self.sessions: dict[str, Session] = {}
        #: how late the event loop all sessions share runs (:mod:`fay_core.load`): over
        #: ``server.max_loop_lag_ms``, no new session starts here (:attr:`busy`)
        self.load = LoopMonitor()
        #: the runtime's Prometheus metrics (``GET /metrics``), in a registry of its own
        self.metrics = Metrics(active=lambda: len(self.sessions), loop_lag_ms=self.load.lag_ms)
        redactor = self.plugins.redactor()
        self.tracer = TurnTracer.configured(self.settings.tracing, redactor)
        self.assembly = Assembly(self.settings, self.plugins, self.knowledge, self.audit, self.metrics, self.tracer,
                                 reports=self.records.reports)
        self.warming = False  #: while :meth:`warm_up` runs (``GET /ready`` answers 503)
        self.draining = False  #: once :meth:`drain` started: no new sessions, ``GET /ready`` answers 503
        self._drain_cut = asyncio.Event()
        #: this node's membership of a cluster (:mod:`fay_core.cluster`), when ``cluster.redis_url`` is set
        self.cluster: Cluster | None = None
        self._reaper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        for result in self.plugins.pm.hook.startup(app=self):
            await await_me_maybe(result)
        self._reaper = asyncio.get_running_loop().create_task(self._reap_idle(), name="fay.reaper")
        self.load.start()

    async def stop(self) -> None:
        await self.load.stop()
        if self._reaper is not None:
            self._reaper.cancel()
            await asyncio.gather(self._reaper, return_exceptions=True)
            self._reaper = None
        await asyncio.gather(*(self.close_session(sid, "server stopping") for sid in list(self.sessions)))
        if self.tracer is not None:
            await asyncio.to_thread(self.tracer.close)
        await asyncio.to_thread(self.records.close)

    async def drain(self, timeout_s: float) -> int:
        """Stop starting sessions (:class:`~fay_core.errors.ServerDraining`, ``GET /ready`` 503) and wait up to
        ``timeout_s`` for the open ones to end (closed by their clients, or idle), or until :meth:`cut_drain`.
        Returns how many are still open; :meth:`stop` closes them."""
        self.draining = True
        self.metrics.draining.set(1)
        if self.cluster is not None:  # the other nodes stop placing sessions here at once
            await self.cluster.publish()
        log.info("draining: no new sessions; waiting up to %g s for %d open session(s)", timeout_s,
                 len(self.sessions))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.sessions and not self._drain_cut.is_set() and loop.time() < deadline:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drain_cut.wait(), min(0.1, max(0.0, deadline - loop.time())))
        left = len(self.sessions)
        log.info("drained: %d session(s) still open are closed now", left)
        return left

    def cut_drain(self) -> None:
        """End a :meth:`drain` now (a second SIGTERM)."""
        self._drain_cut.set()

    @property
    def busy(self) -> bool:
        """Whether the event loop runs later than ``server.max_loop_lag_ms``: no new session starts meanwhile.
        Never during :meth:`warm_up`, whose loading holds the loop for a while (``GET /ready`` says 503 then)."""
        return not self.warming and self.load.busy(self.settings.server.max_loop_lag_ms)

    async def __aenter__(self) -> Fay:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def create_session(self, persona_id: str | None = None, session_id: str | None = None, *,
                             tenant: str | None = None) -> Session:
        """Start a session with ``persona_id`` (the default persona if none); with ``tenant``, only one of that
        tenant's personas (:meth:`persona_for`). The session's ``tenant`` is its persona's."""
        if self.draining:
            self.metrics.session_refused("draining")
            raise ServerDraining("this server is draining (shutting down) and starts no new sessions: start the "
                                 "session on another node, or retry shortly")
        if self.busy:
            self.metrics.session_refused("busy")
            raise NodeBusy(f"this server is busy (its event loop runs {self.load.lag_ms():.0f} ms late, over "
                           f"server.max_loop_lag_ms {self.settings.server.max_loop_lag_ms:g}) and starts no new "
                           "session until it catches up: try again in a moment")
        limit = self.settings.server.max_sessions
        if len(self.sessions) >= limit:
            self.metrics.session_refused("limit")
            raise SessionLimit(f"too many sessions: the limit of {limit} is reached, try again later")
        persona = self.persona_for(persona_id, tenant)
        session = await self.assembly.build(persona, session_id)
        self.sessions[session.id] = session
        if self.cluster is not None:
            try:
                await self.cluster.claim(session)
            except ClusterUnavailable:  # other nodes could not route to it: no session rather than a lost one
                await self.close_session(session.id, "cluster unavailable")
                raise
        self.metrics.session_created(persona)
        log.info("session %s started with persona %s", log_tag(session.id), persona.id)
        return session

    async def warm_up(self, persona_id: str | None = None) -> float:
        """Load what a first conversation with ``persona_id`` needs — its knowledge index, the speech models and its
        voice — so that the first visitor does not wait for them. Returns the seconds it took; never raises.

        It goes through the assembly, with a private session that is never listed, so exactly the real loading
        paths run.
        """
        started = time.monotonic()
        self.warming = True
        try:
            persona = self.personas.get(persona_id or self.settings.default_persona)
            session = await self.assembly.build(persona, session_id="warm-up")
            try:
                retriever = session.agent.retriever
                if retriever.enabled:  # ingest if needed, then one search: embedder, index, intent model
                    try:
                        await retriever.retrieve(persona.name)
                    except Exception as exc:  # sessions decline and hand off meanwhile: warm their voice all the same
                        log.error("warm-up of persona %s: knowledge unavailable: %s (knowledge base: %s; GET /ready "
                                  "answers 503 while it is degraded)", persona.id, exc, self.knowledge.status().state)
                await self.assembly.voice(session.bus, persona).warm_up()
            finally:
                await session.close("warm-up done")
        except Exception as exc:  # the first real session will report the same problem where it matters
            log.warning("warm-up of persona %s failed: %s", persona_id or self.settings.default_persona, exc)
        finally:
            self.warming = False
        took = time.monotonic() - started
        log.info("warm-up done in %.1f s", took)
        return took

    def persona_for(self, persona_id: str | None, tenant: str | None = None) -> Persona:
        """The persona ``persona_id`` (the default one if ``None``), for ``tenant`` if given.

        For a tenant, another tenant's persona is :class:`~fay_core.errors.UnknownPersona` with exactly the message
        of one that does not exist, listing only the tenant's own personas, and so is a broken persona file
        unless the tenant is ``default`` (the operator's, which sees the file's problems). Without a persona id a
        tenant gets ``default_persona`` if it is the tenant's, else the first of the tenant's personas.
        """
        if tenant is None:
            return self.personas.get(persona_id or self.settings.default_persona)

        def unknown(pid: str) -> UnknownPersona:
            known = ", ".join(self.personas.ids_of(tenant)) or "none"
            return UnknownPersona(f"unknown persona {pid!r} (known: {known})")

        if persona_id is None:
            default = self.settings.default_persona
            try:
                persona = self.personas.get(default)
            except PersonaError:
                if tenant == "default":
                    raise
                persona = None
            if persona is not None and persona.tenant == tenant:
                return persona
            own = self.personas.ids_of(tenant)
            if not own:
                raise UnknownPersona("there is no persona for this API key's tenant: ask the operator to add one")
            persona_id = own[0]
        try:
            persona = self.personas.get(persona_id)
        except UnknownPersona:
            raise unknown(persona_id) from None
        except PersonaError:
            if tenant == "default":
                raise
            raise unknown(persona_id) from None
        if persona.tenant != tenant:
            raise unknown(persona_id)
        return persona

    def get(self, session_id: str, tenant: str | None = None) -> Session:
        """The live session ``session_id``; with ``tenant``, another tenant's session is
        :class:`~fay_core.errors.UnknownSession` exactly like one that does not exist."""
        session = self.sessions.get(session_id)
        if session is None or (tenant is not None and session.tenant != tenant):
            raise UnknownSession(f"unknown session {session_id!r}: create one with POST /api/sessions")
        return session

    async def close_session(self, session_id: str, reason: str = "") -> None:
        session = self.sessions.pop(session_id, None)
        if session is not None:
            await session.close(reason)
            log.info("session %s closed (%s)", log_tag(session_id), reason or "by request")

    async def _reap_idle(self) -> None:
        idle = self.settings.server.session_idle_s
        while True:
            await asyncio.sleep(min(60.0, idle / 2))
            if self.settings.audit.retention_days is not None:  # once a day, so files expire on an idle server too
                await asyncio.to_thread(self.audit.apply_retention, daily=True)
            now = time.monotonic()
            for sid, s in list(self.sessions.items()):
                if now - s.last_active > idle:
                    await self.close_session(sid, "idle")
