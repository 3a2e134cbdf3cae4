"""The validation processor: sandbox.requests → REQUESTED, then VALIDATED or REJECTED."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection

import faust
import structlog
from msgspec import structs

from processors.edges import Edges, bound, now_ms
from processors.metrics import ProcessorMetrics
from processors.policy import Policy
from processors.rules import Rejection, validate
from streams.app import raw_topic
from streams.codec import CodecError
from streams.records import ExecutionEvent, ExecutionRequest
from streams.settings import Settings
from streams.states import State
from streams.tracing import Tracer, resolve

log = structlog.get_logger()
# Rejections by the static policy (as opposed to a malformed request): security events.
# Requests in flight at once (each waits for its transitions to reach the broker).
VALIDATION_CONCURRENCY = 8
POLICY_CODES = frozenset({"banned_import", "network_not_allowed", "limit_above_maximum"})


def request_events(
    raw: bytes, request: ExecutionRequest, verdict: ExecutionRequest | Rejection, at_ms: int
) -> list[ExecutionEvent]:
    """The two transitions a request produces: REQUESTED, then VALIDATED (normalized) or REJECTED."""
    requested = ExecutionEvent(
        execution_id=request.id, seq=0, state=State.REQUESTED, at_ms=at_ms, tenant=request.tenant, request=raw
    )
    if isinstance(verdict, Rejection):
        second = ExecutionEvent(
            execution_id=request.id,
            seq=1,
            state=State.REJECTED,
            at_ms=at_ms,
            tenant=request.tenant,
            reason=f"{verdict.code}: {verdict.message}",
            field=verdict.field,
            request=raw,
        )
    else:
        second = ExecutionEvent(
            execution_id=request.id,
            seq=1,
            state=State.VALIDATED,
            at_ms=at_ms,
            tenant=request.tenant,
            max_attempts=verdict.max_attempts or 1,
            request=verdict.encode(),
        )
    return [requested, second]


def install(
    app: faust.App,
    settings: Settings,
    policy: Policy,
    languages: Collection[str],
    *,
    metrics: ProcessorMetrics | None = None,
    tracer: Tracer | None = None,
) -> None:
    edges = Edges(app, settings, "validation", metrics, tracer)
    requests = raw_topic(app, edges.names.requests)
    # Execution ids seen, so that a repeated id produces no second run.
    seen = app.Table("seen-ids", key_type=str, value_type=bytes, use_partitioner=True, partitions=settings.partitions)
    in_flight: set[str] = set()

    # Several copies of the agent share the topic's messages, so that one request's wait for the
    # broker to have its two transitions does not hold up the next request (acks are per message;
    # faust commits an offset only once every message before it is acknowledged).
    @app.agent(requests, name="validate", concurrency=VALIDATION_CONCURRENCY)
    async def validate_requests(stream: faust.StreamT[bytes]) -> None:
        async for message in stream.events():
            raw = message.value
            try:
                request = ExecutionRequest.decode(raw)
            except CodecError as exc:
                await edges.dead_letter(message.message, f"{type(exc).__name__}: {exc}")
                continue
            except Exception as exc:
                await edges.dead_letter(message.message, f"invalid ExecutionRequest: {exc}")
                continue
            if request.id in seen or request.id in in_flight:
                continue  # idempotency: this id already ran or runs
            parent = resolve(message.headers, request.trace_id)
            span = edges.tracer.span("validation", parent, execution_id=request.id)
            with span as trace, bound(request.id, request.tenant, trace):
                started = time.perf_counter()
                at = now_ms()
                if not request.created_at_ms or request.trace_id != trace.trace_id:
                    request = structs.replace(
                        request, created_at_ms=request.created_at_ms or at, trace_id=trace.trace_id
                    )
                verdict = validate(request, policy, languages)
                if isinstance(verdict, Rejection) and verdict.code in POLICY_CODES:
                    log.warning("security_policy_rejected", code=verdict.code, field=verdict.field)
                # In flight before the first await, so that a duplicate handled meanwhile by another
                # copy of this agent is skipped; seen only once the broker has the transitions.
                in_flight.add(request.id)
                try:
                    # Both transitions in one batch, then one wait for the broker to have both.
                    events = request_events(raw, request, verdict, at)
                    sent = [await edges.emit(event, trace=trace) for event in events]
                    await asyncio.gather(*sent)
                    seen[request.id] = b"1"
                finally:
                    in_flight.discard(request.id)
                edges.metrics.on_validation(time.perf_counter() - started)
