"""The Starlette app: thin routes over the pure core (validation, view, auth, rate limits).

Each route decodes, calls the core, and answers or produces. `Services` carries the ports;
`server.serve` builds the real ones (Kafka producer, live view, webhook dispatcher).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import logstream, openapi, status
from gateway.api_types import Accepted, ErrorBody, ErrorDetail, ExecutionCreate, Health, LanguageOut
from gateway.audit import AuditLog
from gateway.auth import KeyRing, Principal
from gateway.errors import ApiError, from_decode_error, from_rejection, from_validation_error, not_found
from gateway.languages import LanguageSource
from gateway.live import LiveView
from gateway.metrics import CONTENT_TYPE, GatewayMetrics
from gateway.ratelimit import RateLimiter
from gateway.stream_slots import StreamSlots
from gateway.view import ExecutionRecord
from processors.policy import DEFAULT_POLICY, Policy
from processors.rules import Rejection, validate
from streams.codec import CodecError
from streams.records import CancelRequest, Checker, ExecutionRequest, JudgeCase, LogChunk, RequestLimits
from streams.settings import Settings
from streams.states import State
from streams.topics import Topics
from streams.tracing import TraceContext, Tracer

_ENCODER = msgspec.json.Encoder()
_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no", ""}


class RecordSink(Protocol):
    """Where the gateway produces: a Kafka producer in `serve`."""

    async def send(
        self, topic: str, value: bytes, key: str, headers: list[tuple[str, bytes]] | None = None
    ) -> None: ...

    async def reachable(self) -> bool: ...


@dataclass
class Services:
    settings: Settings
    sink: RecordSink
    live: LiveView
    languages: LanguageSource
    keys: KeyRing
    limiter: RateLimiter
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)
    audit: AuditLog = field(default_factory=AuditLog)
    policy: Policy = DEFAULT_POLICY
    language_names: Collection[str] = ()
    follow_logs: Callable[[str, int, Callable[[], bool]], AsyncIterator[LogChunk | None]] | None = None
    clock: Callable[[], float] = time.monotonic
    tracer: Tracer = field(default_factory=lambda: Tracer("aevatar-gateway"))
    stream_slots: StreamSlots | None = None  # None: from the settings

    def __post_init__(self) -> None:
        if self.stream_slots is None:
            self.stream_slots = StreamSlots(self.settings.sse_max_streams, self.settings.sse_max_streams_per_tenant)

    @property
    def topics(self) -> Topics:
        return Topics(self.settings.topic_prefix)


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_ENCODER.encode(value), status, headers=headers, media_type="application/json")


def error_response(exc: ApiError) -> Response:
    body = ErrorBody(error=ErrorDetail(code=exc.code, message=exc.message, field=exc.field))
    return json_response(body, exc.status, exc.headers)


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def guard(request: Request) -> Principal:
    """Authenticate and rate-limit a /v1 request; the principal goes on request.state for the audit line."""
    services = _services(request)
    principal = services.keys.authenticate(request.headers.get("authorization"))
    request.state.principal = principal
    # One bucket per tenant (its keys share it); with no keys, per caller address.
    address = request.client.host if request.client else "-"
    bucket = f"tenant:{principal.tenant}" if principal.key_id != "-" else f"ip:{address}"
    retry_after_s = services.limiter.check(bucket, services.clock(), principal.tenant)
    if retry_after_s:
        services.metrics.rate_limited.inc()
        raise ApiError(
            429,
            "rate_limited",
            f"too many requests; retry after {retry_after_s} s",
            None,
            {"Retry-After": str(retry_after_s)},
        )
    return principal


def _visible(services: Services, record: ExecutionRecord | None, principal: Principal) -> bool:
    """Another tenant's execution does not exist, as far as a caller can tell."""
    return record is not None and (services.keys.open or record.tenant == principal.tenant)


def _record(request: Request, principal: Principal) -> ExecutionRecord:
    services = _services(request)
    execution_id = request.path_params["id"]
    request.state.execution_id = execution_id
    record = services.live.get(execution_id)
    if record is None or not _visible(services, record, principal):
        raise not_found(execution_id)
    return record


async def _body(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(413, "body_too_large", f"the body is above {max_bytes} bytes", None)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(413, "body_too_large", f"the body is above {max_bytes} bytes", None)
        chunks.append(chunk)
    return b"".join(chunks)


def _wait_flag(request: Request) -> bool:
    raw = request.query_params.get("wait", "false").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ApiError(422, "invalid_query", "wait must be true or false", "wait")


def to_request(
    body: ExecutionCreate, *, execution_id: str, tenant: str, now_ms: int, trace_id: str | None = None
) -> ExecutionRequest:
    limits = body.limits
    return ExecutionRequest(
        id=execution_id,
        language=body.language,
        code=body.code,
        stdin=body.stdin,
        args=list(body.args),
        files=dict(body.files),
        network=body.network,
        limits=RequestLimits(**msgspec.structs.asdict(limits)) if limits is not None else RequestLimits(),
        callback_url=body.callback_url,
        tenant=tenant,
        trace_id=trace_id,
        created_at_ms=now_ms,
        tests=[JudgeCase(**msgspec.structs.asdict(case)) for case in body.tests],
        checker=Checker(**msgspec.structs.asdict(body.checker)) if body.checker is not None else None,
        stop_on_first_failure=body.stop_on_first_failure,
    )


async def _produce(services: Services, topic: str, value: bytes, key: str, trace: TraceContext | None = None) -> None:
    try:
        await services.sink.send(topic, value, key, trace.headers() if trace is not None else None)
    except Exception as exc:  # the broker's many failure types all mean the same thing to a client
        raise ApiError(503, "kafka_unavailable", f"could not produce to Kafka: {type(exc).__name__}", None) from exc


async def create_execution(request: Request) -> Response:
    services = _services(request)
    principal = guard(request)
    wait = _wait_flag(request)
    raw = await _body(request, services.settings.gateway_max_body_bytes)
    try:
        body = msgspec.json.decode(raw, type=ExecutionCreate)
    except msgspec.ValidationError as exc:
        services.metrics.submissions.labels("invalid").inc()
        raise from_validation_error(exc) from None
    except msgspec.DecodeError as exc:
        services.metrics.submissions.labels("invalid").inc()
        raise from_decode_error(exc) from None
    execution_id = body.id if body.id is not None else uuid.uuid4().hex
    request.state.execution_id = execution_id
    now_ms = int(time.time() * 1000)
    # The caller's W3C traceparent, if it sent one, is the parent of the whole execution's trace.
    parent = TraceContext.parse(request.headers.get("traceparent")) or TraceContext.new()
    execution_request = to_request(
        body, execution_id=execution_id, tenant=principal.tenant, now_ms=now_ms, trace_id=parent.trace_id
    )
    verdict = validate(execution_request, services.policy, services.language_names)
    if isinstance(verdict, Rejection):
        services.metrics.submissions.labels("invalid").inc()
        raise from_rejection(verdict)
    record = services.live.get(execution_id)
    if record is not None:
        if not _visible(services, record, principal):
            raise ApiError(409, "id_in_use", f"id {execution_id!r} is in use", "id")
        services.metrics.submissions.labels("duplicate").inc()
        request.state.trace_id = record.trace_id
    else:
        try:
            encoded = execution_request.encode()
        except (CodecError, ValueError, OverflowError) as exc:
            raise ApiError(422, "unencodable", f"the request cannot be encoded: {exc}", None) from None
        with services.tracer.span("gateway.submit", parent, execution_id=execution_id) as trace:
            # The request, and its copy on sandbox.submissions (kept for re-judging: gateway/rejudge_api.py).
            await asyncio.gather(
                _produce(services, services.topics.requests, encoded, execution_id, trace),
                _produce(services, services.topics.submissions, encoded, execution_id),
            )
        request.state.trace_id = trace.trace_id
        record = services.live.submitted(
            execution_id,
            tenant=principal.tenant,
            language=body.language,
            created_at_ms=now_ms,
            callback_url=body.callback_url,
            trace_id=trace.trace_id,
        )
        services.metrics.submissions.labels("accepted").inc()
    if wait:
        services.metrics.waiters.inc()
        try:
            finished = await services.live.wait_for(execution_id, services.settings.max_wait_ms / 1000)
        finally:
            services.metrics.waiters.dec()
        if finished is not None:
            return json_response(finished.execution(), 200)
        record = services.live.get(execution_id) or record
    return json_response(Accepted(id=execution_id, state=record.state), 202)


async def get_execution(request: Request) -> Response:
    record = _record(request, guard(request))
    return json_response(record.execution())


async def list_events(request: Request) -> Response:
    record = _record(request, guard(request))
    return json_response(record.event_list())


async def cancel_execution(request: Request) -> Response:
    services = _services(request)
    principal = guard(request)
    record = _record(request, principal)
    if not record.finished:
        cancel = CancelRequest(
            execution_id=record.id,
            requested_at_ms=int(time.time() * 1000),
            reason="cancelled through the gateway",
            requested_by=principal.tenant,
        )
        await _produce(services, services.topics.cancellations, cancel.encode(), record.id)
    return json_response(Accepted(id=record.id, state=record.state), 202)


def _sse(event: str, data: Any, event_id: str | None = None) -> ServerSentEvent:
    return ServerSentEvent(data=_ENCODER.encode(data).decode(), event=event, id=event_id)


async def stream_logs(request: Request) -> Response:
    services = _services(request)
    principal = guard(request)
    record = _record(request, principal)
    slots = services.stream_slots
    assert slots is not None
    slot = slots.reserve(principal.tenant)
    if isinstance(slot, str):
        services.metrics.rate_limited.inc()
        raise ApiError(429, "too_many_streams", f"{slot}; retry once one ends", None, {"Retry-After": "5"})
    reserved = slot
    cursor = logstream.LogCursor.parse(request.headers.get("last-event-id"))
    follow = services.follow_logs
    assert follow is not None
    since_ms = record.created_at_ms or (record.events[0].at_ms if record.events else int(time.time() * 1000))
    execution_id = record.id

    def finished() -> bool:
        current = services.live.get(execution_id)
        return current is not None and current.finished

    async def events() -> AsyncIterator[ServerSentEvent]:
        slots.started(reserved)
        services.metrics.log_streams.inc()
        try:
            last_state: State | None = None
            async for chunk in follow(execution_id, since_ms, finished):
                current = services.live.get(execution_id)
                if current is not None and current.state is not last_state and not current.state.terminal:
                    last_state = current.state
                    yield _sse("state", {"id": execution_id, "state": last_state})
                if chunk is None:
                    continue
                new_attempt, piece = cursor.take(chunk)
                if new_attempt:
                    yield _sse("attempt", {"attempt": cursor.attempt}, cursor.event_id)
                if piece is not None:
                    yield _sse(piece.stream, {"offset": piece.offset, "text": piece.text}, cursor.event_id)
            final = services.live.get(execution_id)
            if final is not None:
                yield _sse("end", final.execution(), cursor.event_id)
        finally:
            slots.release(reserved)
            services.metrics.log_streams.dec()

    return EventSourceResponse(events(), ping=15, headers={"Cache-Control": "no-store"})


async def list_languages(request: Request) -> Response:
    guard(request)
    infos = await _services(request).languages.languages()
    return json_response([LanguageOut(name=i.name, version=i.version or "unknown", compiled=i.compiled) for i in infos])


async def healthz(request: Request) -> Response:
    return json_response(Health(status="ok"))


async def readyz(request: Request) -> Response:
    services = _services(request)
    kafka_ok = await services.sink.reachable()
    view_ok = services.live.ready.is_set()
    if kafka_ok and view_ok:
        return json_response(Health(status="ready", kafka=True, view_ready=True))
    why = "Kafka is unreachable" if not kafka_ok else "the view is still being rebuilt from Kafka"
    raise ApiError(503, "not_ready", f"not ready: {why}", None)


async def metrics(request: Request) -> Response:
    services = _services(request)
    view = services.live.view
    services.metrics.on_view(len(view), view.output_bytes, view.evicted)
    return Response(services.metrics.render(), media_type=CONTENT_TYPE)


async def openapi_json(request: Request) -> Response:
    document: dict[str, Any] = request.app.state.openapi
    return json_response(document)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    request.state.outcome = exc.code
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(ApiError(exc.status_code, code, str(exc.detail), None, dict(exc.headers or {})))


async def _server_error(request: Request, exc: Exception) -> Response:
    return error_response(ApiError(500, "internal_error", "the gateway failed; see its log", None))


class ObserveMiddleware:
    """Metrics and one audit line per request: who, what, which execution, the outcome."""

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app, self.services = app, services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 500
        state = scope.setdefault("state", {})

        async def observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                route = scope.get("route")
                template = getattr(route, "path", "unmatched")
                self.services.metrics.on_request(template, scope["method"], status, time.monotonic() - started)
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            route = scope.get("route")
            principal = state.get("principal")
            client = scope.get("client")
            self.services.audit.request(
                tenant=principal.tenant if principal is not None else "-",
                key_id=principal.key_id if principal is not None else "-",
                client=client[0] if client else None,
                method=scope["method"],
                route=getattr(route, "path", "unmatched"),
                path=scope["path"],
                status=status,
                duration_ms=int((time.monotonic() - started) * 1000),
                execution_id=state.get("execution_id"),
                trace_id=state.get("trace_id"),
                outcome=state.get("outcome") or ("ok" if status < 400 else f"http_{status}"),
            )


def build_app(services: Services) -> Starlette:
    from gateway import batches_api, rejudge_api  # here: their routes import this module

    routes = [
        Route("/", status.page, methods=["GET"]),
        Route("/v1/executions", create_execution, methods=["POST"]),
        Route("/v1/executions/{id}", get_execution, methods=["GET"]),
        Route("/v1/executions/{id}/events", list_events, methods=["GET"]),
        Route("/v1/executions/{id}/logs", stream_logs, methods=["GET"]),
        Route("/v1/executions/{id}/cancel", cancel_execution, methods=["POST"]),
        *batches_api.routes(),
        *rejudge_api.routes(),
        Route("/v1/languages", list_languages, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
    ]
    from gateway import compat  # here: its routes import this module

    mounted: list[BaseRoute] = [*routes, *compat.routes(services.settings, create_execution)]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        ApiError: _api_error,
        HTTPException: _http_error,
        Exception: _server_error,
    }
    app = Starlette(routes=mounted, exception_handlers=handlers)  # type: ignore[arg-type]
    app.state.services = services
    app.state.openapi = openapi.build()
    app.add_middleware(ObserveMiddleware, services=services)
    return app
