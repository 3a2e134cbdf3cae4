"""The W3C traceparent carrier and the stage spans, with and without an OTLP exporter."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from streams.tracing import TraceContext, Tracer, from_headers, resolve

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_traceparent_round_trips_and_malformed_ones_are_refused() -> None:
    parsed = TraceContext.parse(f"00-{TRACE}-00f067aa0ba902b7-01")
    assert parsed == TraceContext(TRACE, "00f067aa0ba902b7", True)
    assert parsed.traceparent == f"00-{TRACE}-00f067aa0ba902b7-01"
    for bad in (None, "", "garbage", f"ff-{TRACE}-00f067aa0ba902b7-01", f"00-{'0' * 32}-00f067aa0ba902b7-01",
                f"00-{TRACE}-{'0' * 16}-01", f"00-{TRACE[:-1]}-00f067aa0ba902b7-01"):  # fmt: skip
        assert TraceContext.parse(bad) is None, bad


def test_headers_carry_the_context_and_resolve_prefers_the_records_trace_id() -> None:
    ctx = TraceContext.new()
    assert from_headers(ctx.headers()) == ctx
    assert from_headers(dict(ctx.headers())) == ctx  # some clients hand headers over as a mapping
    assert from_headers(None) is None and from_headers([("other", b"x")]) is None
    assert resolve(ctx.headers(), ctx.trace_id) == ctx
    assert resolve(ctx.headers(), None) == ctx
    assert resolve(None, TRACE).trace_id == TRACE  # no header: continue the record's trace
    assert resolve(ctx.headers(), TRACE).trace_id == TRACE  # the record's trace id wins over a foreign header
    fresh = resolve(None, None)
    assert len(fresh.trace_id) == 32 and fresh.trace_id != ctx.trace_id


def test_without_an_endpoint_a_span_is_only_a_new_span_id() -> None:
    tracer = Tracer("test")
    parent = TraceContext.new()
    with tracer.span("stage", parent) as child:
        assert child.trace_id == parent.trace_id and child.span_id != parent.span_id
    assert not tracer.exporting
    tracer.shutdown()


class _Collector(BaseHTTPRequestHandler):
    received: list[tuple[str, str, bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, self.headers["Content-Type"], body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()
        self.wfile.write(b"")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    server = HTTPServer(("127.0.0.1", 0), _Collector)
    _Collector.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Collector.received
    server.shutdown()
    server.server_close()


def test_with_an_endpoint_stage_spans_are_exported_by_otlp_in_the_callers_trace(
    collector: tuple[str, list[tuple[str, str, bytes]]],
) -> None:
    url, received = collector
    tracer = Tracer("aevatar-test", url)
    parent = TraceContext.new()
    with tracer.span("validation", parent, execution_id="e1") as child:
        pass
    tracer.shutdown()  # flushes the batch
    assert tracer.exporting
    assert [(path, kind) for path, kind, _ in received] == [("/v1/traces", "application/x-protobuf")]
    export = ExportTraceServiceRequest()
    export.ParseFromString(received[0][2])
    spans = [s for rs in export.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert len(spans) == 1
    span = spans[0]
    assert span.name == "validation"
    assert span.trace_id.hex() == parent.trace_id
    assert span.parent_span_id.hex() == parent.span_id
    assert span.span_id.hex() == child.span_id
    assert {a.key: a.value.string_value for a in span.attributes} == {"execution_id": "e1"}
    service = {a.key: a.value.string_value for a in export.resource_spans[0].resource.attributes}
    assert service["service.name"] == "aevatar-test"
