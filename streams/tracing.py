"""Tracing: a W3C traceparent carried in Kafka headers, and OpenTelemetry spans for each stage.

The trace id of an execution travels two ways: as the `traceparent` header of every record
about it (the W3C carrier, so other tools can join the trace), and as `trace_id` in the
ExecutionRequest that the events embed (so a stage that acts on an execution later, like the
scheduler freeing capacity, still knows it). `Tracer.span` opens one stage's span: with an
OTLP endpoint configured it is a real OpenTelemetry SDK span, exported in batches; without
one, no SDK object is made and a span costs one random span id.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

TRACEPARENT = "traceparent"
# Matched whole with fullmatch: `$` would also accept a trailing newline.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16


def _new_span_id() -> str:
    while True:
        span_id = secrets.token_hex(8)
        if span_id != _ZERO_SPAN:
            return span_id


def valid_trace_id(value: str | None) -> bool:
    return value is not None and bool(_TRACE_ID.fullmatch(value)) and value != _ZERO_TRACE


@dataclass(frozen=True, slots=True)
class TraceContext:
    """One position in a trace: the trace id and the id of the span that is the parent of what follows."""

    trace_id: str
    span_id: str
    sampled: bool = True

    @classmethod
    def new(cls, trace_id: str | None = None) -> TraceContext:
        """A fresh context; in the given trace when it is a valid trace id, else in a new trace."""
        while not valid_trace_id(trace_id):
            trace_id = secrets.token_hex(16)
        assert trace_id is not None
        return cls(trace_id, _new_span_id())

    @classmethod
    def parse(cls, value: str | bytes | None) -> TraceContext | None:
        """A traceparent header value, or None when it is absent or malformed (W3C: then start anew)."""
        if value is None:
            return None
        text = value.decode("ascii", errors="replace") if isinstance(value, bytes) else value
        found = _TRACEPARENT.fullmatch(text.strip().lower())
        if found is None:
            return None
        version, trace_id, span_id, flags = found.groups()
        if version == "ff" or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
            return None
        return cls(trace_id, span_id, bool(int(flags, 16) & 1))

    def child(self) -> TraceContext:
        return TraceContext(self.trace_id, _new_span_id(), self.sampled)

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"

    def headers(self) -> list[tuple[str, bytes]]:
        """Kafka headers (aiokafka's list form) that carry this context."""
        return [(TRACEPARENT, self.traceparent.encode())]


def from_headers(headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None) -> TraceContext | None:
    """The context in a record's `traceparent` header (a mapping or aiokafka's sequence)."""
    if not headers:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for key, value in pairs:
        if key.lower() == TRACEPARENT:
            return TraceContext.parse(value)
    return None


def resolve(headers: Any, trace_id: str | None) -> TraceContext:
    """The context a stage continues: the header's, else a new span in the record's trace id, else a new trace."""
    found = from_headers(headers)
    if found is not None and (trace_id is None or found.trace_id == trace_id):
        return found
    return TraceContext.new(trace_id)


def _nothing() -> None:
    """The end of a span nobody records."""


class Tracer:
    """Stage spans for one process. `otlp_endpoint` None: no SDK, no exporter, no cost beyond a span id."""

    def __init__(self, service: str, otlp_endpoint: str | None = None) -> None:
        self.service = service
        self._provider: Any = None
        self._tracer: Any = None
        if otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            endpoint = otlp_endpoint.rstrip("/")
            if not endpoint.endswith("/v1/traces"):
                endpoint += "/v1/traces"
            self._provider = TracerProvider(resource=Resource.create({"service.name": service}))
            self._provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
            self._tracer = self._provider.get_tracer("aevatar-sandbox")

    @property
    def exporting(self) -> bool:
        return self._tracer is not None

    @contextlib.contextmanager
    def span(self, name: str, parent: TraceContext, **attributes: str | int | bool) -> Iterator[TraceContext]:
        """A span for one stage, child of `parent`; yields the context to put on what the stage produces."""
        if self._tracer is None:
            yield parent.child()
            return
        from opentelemetry import trace

        context = trace.set_span_in_context(self._remote(parent))
        with self._tracer.start_as_current_span(name, context=context, attributes=attributes) as span:
            own = span.get_span_context()
            yield TraceContext(parent.trace_id, format(own.span_id, "016x"), parent.sampled)

    def start(
        self, name: str, parent: TraceContext, **attributes: str | int | bool
    ) -> tuple[TraceContext, Callable[[], None]]:
        """A span begun now, child of `parent`, ended by calling the function returned with its context
        (from any task: it is never the current span)."""
        if self._tracer is None:
            return parent.child(), _nothing
        from opentelemetry import trace

        context = trace.set_span_in_context(self._remote(parent))
        span = self._tracer.start_span(name, context=context, attributes=attributes)
        own = span.get_span_context()
        return TraceContext(parent.trace_id, format(own.span_id, "016x"), parent.sampled), span.end

    @staticmethod
    def _remote(parent: TraceContext) -> Any:
        from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

        return NonRecordingSpan(
            SpanContext(
                trace_id=int(parent.trace_id, 16),
                span_id=int(parent.span_id, 16),
                is_remote=True,
                trace_flags=TraceFlags(TraceFlags.SAMPLED if parent.sampled else TraceFlags.DEFAULT),
            )
        )

    def shutdown(self) -> None:
        """Flush the spans not yet exported (a no-op with the exporter off)."""
        if self._provider is not None:
            self._provider.shutdown()
