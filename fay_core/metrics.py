"""Prometheus metrics of one runtime, served at ``GET /metrics`` (text exposition format, ``prometheus-client``).

Every metric lives in the runtime's own :class:`~prometheus_client.CollectorRegistry` (not the process-wide
default), so several runtimes in one process (tests, a benchmark) count separately. What is counted comes from
each session's bus (:meth:`Metrics.observe`, called by :mod:`fay_core.assembly`) and from the runtime itself::

    fay_sessions_active                     gauge     open sessions (the number an autoscaler follows)
    fay_sessions_created_total{persona}     counter   sessions started
    fay_event_loop_lag_seconds              gauge     how late the shared event loop runs (p90, last 5 s; :mod:`.load`)
    fay_sessions_refused_total{reason}      counter   sessions refused: ``limit`` (server.max_sessions), ``draining``,
                                                      ``busy`` (the loop runs late: ``server.max_loop_lag_ms``)
    fay_draining                            gauge     1 once SIGTERM started the drain
    fay_turns_total{persona,language,outcome}
                                            counter   finished turns; outcome ``answered``, ``declined`` (nothing to
                                                      ground an answer on), ``interrupted`` (barge-in, superseded,
                                                      session closed), ``error`` (the answerer failed)
    fay_stage_seconds{stage}                histogram the latency marks of each turn (``LatencyMeasured``: text turns'
                                                      ``retrieved``, ``llm_first_token``, ``agent_first_text``,
                                                      ``turn_finished``; voice turns' ``vad_end``, ``asr_final``,
                                                      first audio ...), seconds since the mark's origin
    fay_errors_total{source}                counter   ``ErrorRaised`` events by the component that raised them
    fay_bus_dropped_events_total{subscriber}
                                            counter   events a full subscriber queue dropped (:mod:`fay_core.bus`)

Labels hold only ids the operator chose (persona ids, stage and component names), never user text.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .bus import Bus
from .events import AgentTurnFinished, ErrorRaised, LatencyMeasured
from .persona import Persona

__all__ = ["CONTENT_TYPE", "Metrics", "outcome"]

#: the ``Content-Type`` of :meth:`Metrics.render`
CONTENT_TYPE = CONTENT_TYPE_LATEST
#: latency buckets (seconds): from a fast retrieval to a slow LLM's whole answer
STAGE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 30.0, 60.0)


def outcome(finished: AgentTurnFinished) -> str:
    """How a turn ended, as ``fay_turns_total`` labels it: ``interrupted``, ``error``, ``declined`` or
    ``answered`` (in that order: an interrupted turn that had failed counts as interrupted)."""
    if finished.interrupted:
        return "interrupted"
    if finished.error:
        return "error"
    return "declined" if finished.declined else "answered"


class Metrics:
    """The runtime's metrics (see the module docstring); ``active`` says how many sessions are open."""

    def __init__(self, active: Callable[[], int] | None = None,
                 loop_lag_ms: Callable[[], float] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.sessions_active = Gauge("fay_sessions_active", "Open sessions", registry=r)
        if active is not None:
            self.sessions_active.set_function(lambda: float(active()))
        self.sessions_created = Counter("fay_sessions_created", "Sessions started", ["persona"], registry=r)
        self.loop_lag = Gauge("fay_event_loop_lag_seconds", "How late the event loop wakes up (p90, last 5 s)",
                              registry=r)
        if loop_lag_ms is not None:
            self.loop_lag.set_function(lambda: loop_lag_ms() / 1000.0)
        self.sessions_refused = Counter("fay_sessions_refused", "Sessions refused (limit, draining, busy)", ["reason"],
                                        registry=r)
        self.draining = Gauge("fay_draining", "1 while the server drains (SIGTERM): no new sessions", registry=r)
        self.turns = Counter("fay_turns", "Finished turns", ["persona", "language", "outcome"], registry=r)
        self.stages = Histogram("fay_stage_seconds", "Latency marks of turns, seconds since their origin", ["stage"],
                                buckets=STAGE_BUCKETS, registry=r)
        self.errors = Counter("fay_errors", "ErrorRaised events by source", ["source"], registry=r)
        self.dropped = Counter("fay_bus_dropped_events", "Events dropped by full subscriber queues", ["subscriber"],
                               registry=r)

    # --- what sessions report -----------------------------------------------------------------------------

    def observe(self, bus: Bus, persona: Persona) -> None:
        """Count what ``bus`` carries for a session of ``persona``: its turns, latency marks and errors.

        One subscriber, a quick sync handler (it runs inside ``publish()`` when idle, see :mod:`fay_core.bus`),
        that keeps old turns' events (an interrupted turn's end is stale by the time it is published).
        """
        turns = {o: self.turns.labels(persona.id, persona.language, o)
                 for o in ("answered", "declined", "interrupted", "error")}

        def count(event: object) -> None:
            if isinstance(event, AgentTurnFinished):
                turns[outcome(event)].inc()
            elif isinstance(event, LatencyMeasured):
                self.stages.labels(event.stage).observe(max(0.0, event.ms) / 1000.0)
            elif isinstance(event, ErrorRaised):
                self.errors.labels(event.source).inc()

        bus.subscribe(count, AgentTurnFinished, LatencyMeasured, ErrorRaised, name="metrics", drop_stale=False,
                      maxsize=4096)

    def on_drop(self, subscriber: str) -> None:
        """A bus dropped one event of ``subscriber`` (its queue was full): the bus's ``on_drop`` callback."""
        self.dropped.labels(subscriber).inc()

    def session_created(self, persona: Persona) -> None:
        self.sessions_created.labels(persona.id).inc()

    def session_refused(self, reason: str) -> None:
        self.sessions_refused.labels(reason).inc()

    # --- exposition -------------------------------------------------------------------------------------

    def render(self) -> bytes:
        """Every metric in the Prometheus text format (:data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)
