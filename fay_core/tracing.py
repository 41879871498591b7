"""OpenTelemetry traces: one trace per turn, its stages as child spans (``pip install 'fay[otel]'``).

Tracing is on when the ``otel`` extra is installed and the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) names a collector: spans go there over OTLP/gRPC, configured as every
OpenTelemetry exporter is (``OTEL_SERVICE_NAME``, ``OTEL_EXPORTER_OTLP_HEADERS``, ...). Fay adds no endpoint
setting of its own, so a cluster's usual OTel configuration applies unchanged. ``tracing.enabled: false`` turns it
off all the same.

Spans of a session's turn (from its bus, :meth:`TurnTracer.observe`)::

    fay.turn                    from the user's message (typed, or the final transcript) to the answer's end;
                                fay.persona, fay.language, fay.turn, fay.source, fay.outcome, fay.answered_by,
                                fay.citations, fay.session (a hash of the session id, as INFO logs name it)
      fay.stage.<stage>         one per latency mark (``LatencyMeasured``): from the previous mark of the turn
                                (or the turn's start) to this one; voice marks that come after the answer's end
                                (first audio out) are still children of their turn
      (events) error            each ``ErrorRaised`` of the turn: fay.error.source, fay.error.type

No user text is in a span unless ``tracing.personal_data`` is on: then the turn carries ``fay.personal.question``
and ``fay.personal.answer`` (the ``fay.personal.`` prefix marks personal data for a collector's filters), masked
by the runtime's redactor (:func:`fay_core.redaction.redact_attributes`) like every other attribute.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from .bus import Bus
from .events import AgentTurnFinished, ErrorRaised, LatencyMeasured, UserTextReceived
from .metrics import outcome
from .persona import Persona
from .redaction import Redactor, redact_attributes

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

    from .settings import TracingSettings

log = logging.getLogger(__name__)

#: the environment variables that name a collector (OpenTelemetry's own)
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
#: turns of a session whose spans are kept for late marks (voice marks after the answer's end)
KEEP_TURNS = 4


def _wall_ns(monotonic: float) -> int:
    """The wall-clock time (ns since the epoch) of a ``time.monotonic()`` stamp, as spans want it."""
    return time.time_ns() - int((time.monotonic() - monotonic) * 1e9)


class _TurnSpans:
    __slots__ = ("last_ns", "span")

    def __init__(self, span: Span, start_ns: int) -> None:
        self.span = span
        self.last_ns = start_ns


class TurnTracer:
    """Writes each session's turns as traces with ``tracer`` (see the module docstring); ``provider``, if given,
    is shut down (its spans flushed) by :meth:`close`."""

    def __init__(self, tracer: Tracer, *, personal_data: bool = False, redactor: Redactor | None = None,
                 provider: Any = None) -> None:
        self.tracer = tracer
        self.personal_data = personal_data
        self.redactor = redactor
        self.provider = provider

    @classmethod
    def configured(cls, settings: TracingSettings, redactor: Redactor | None = None) -> TurnTracer | None:
        """A tracer exporting over OTLP when tracing is enabled, the extra installed and a collector named in the
        environment; else None (and a warning when an endpoint is set but the extra is missing)."""
        if not settings.enabled or not any(os.environ.get(v) for v in ENDPOINT_VARIABLES):
            return None
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError:
            log.warning("OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed: no traces "
                        "(pip install 'fay[otel]')")
            return None
        resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "fay")})
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        return cls(provider.get_tracer("fay"), personal_data=settings.personal_data, redactor=redactor,
                   provider=provider)

    def close(self) -> None:
        """Flush and stop the exporter this tracer owns (if any)."""
        if self.provider is not None:
            self.provider.shutdown()

    # --- a session's turns --------------------------------------------------------------------------------

    def observe(self, bus: Bus, persona: Persona) -> None:
        """Trace every turn ``bus`` carries for a session of ``persona`` (one quick sync subscriber)."""
        from opentelemetry import trace

        turns: OrderedDict[int, _TurnSpans] = OrderedDict()
        session = "#" + hashlib.sha256(bus.session_id.encode("utf-8", "surrogatepass")).hexdigest()[:10]

        def attrs(values: dict[str, Any]) -> dict[str, Any]:
            return redact_attributes(values, self.redactor)

        def on_event(event: object) -> None:
            if isinstance(event, UserTextReceived):
                start = _wall_ns(event.ts)
                values: dict[str, Any] = {"fay.session": session, "fay.persona": persona.id,
                                          "fay.language": persona.language, "fay.turn": event.turn_id,
                                          "fay.source": event.source}
                if self.personal_data:
                    values["fay.personal.question"] = event.text
                span = self.tracer.start_span("fay.turn", start_time=start, attributes=attrs(values))
                turns[event.turn_id] = _TurnSpans(span, start)
                while len(turns) > KEEP_TURNS:
                    turns.popitem(last=False)
                return
            got = turns.get(getattr(event, "turn_id", 0))
            if got is None:
                return
            if isinstance(event, LatencyMeasured):
                end = _wall_ns(event.ts)
                context = trace.set_span_in_context(got.span)
                child = self.tracer.start_span(f"fay.stage.{event.stage}", context=context,
                                               start_time=min(got.last_ns, end),
                                               attributes={"fay.stage": event.stage, "fay.ms": event.ms,
                                                           "fay.since": event.since})
                child.end(end_time=end)
                got.last_ns = max(got.last_ns, end)
            elif isinstance(event, ErrorRaised):
                got.span.add_event("error", {"fay.error.source": event.source, "fay.error.type": event.error_type})
            elif isinstance(event, AgentTurnFinished) and got.span.is_recording():
                values = {"fay.outcome": outcome(event), "fay.answered_by": event.answered_by,
                          "fay.citations": len(event.citations)}
                if self.personal_data:
                    values["fay.personal.answer"] = event.text
                got.span.set_attributes(attrs(values))
                if event.error:  # (its message may quote the customer: the error event names only the type)
                    got.span.set_status(trace.StatusCode.ERROR, "the answerer failed")
                got.span.end(end_time=_wall_ns(event.ts))

        bus.subscribe(on_event, UserTextReceived, LatencyMeasured, ErrorRaised, AgentTurnFinished,
                      name="tracing", drop_stale=False, maxsize=4096)
