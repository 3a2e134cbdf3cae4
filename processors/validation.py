"""The validation processor: sandbox.requests → REQUESTED, then VALIDATED or REJECTED."""

from __future__ import annotations

from collections.abc import Collection

import faust
from msgspec import structs

from processors.edges import Edges, now_ms
from processors.policy import Policy
from processors.rules import Rejection, validate
from streams.app import raw_topic
from streams.codec import CodecError
from streams.records import ExecutionEvent, ExecutionRequest
from streams.settings import Settings
from streams.states import State


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


def install(app: faust.App, settings: Settings, policy: Policy, languages: Collection[str]) -> None:
    edges = Edges(app, settings, "validation")
    requests = raw_topic(app, edges.names.requests)
    # Execution ids seen, so that a repeated id produces no second run.
    seen = app.Table("seen-ids", key_type=str, value_type=bytes, use_partitioner=True, partitions=settings.partitions)

    @app.agent(requests, name="validate")
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
            if request.id in seen:
                continue  # idempotency: this id already ran or runs
            at = now_ms()
            if not request.created_at_ms:
                request = structs.replace(request, created_at_ms=at)
            verdict = validate(request, policy, languages)
            for event in request_events(raw, request, verdict, at):
                await edges.emit(event, wait=True)
            seen[request.id] = b"1"
