"""POST /v1/batches and GET /v1/batches/{id}: many executions in one call (issue 23, point 2).

Thin routes over core/batches.py: every item is decoded and validated before anything is
produced, so a bad item refuses the whole batch with a 422 naming it (`executions[3].language`);
then each item goes to sandbox.requests as one ordinary request carrying the batch's `batch_id`.
A batch belongs to its tenant: another tenant's batch does not exist, as with executions.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from core.batches import MAX_BATCH_EXECUTIONS, item_field, member_id, state_counts
from gateway import app as api
from gateway.api_types import Accepted
from gateway.batch_types import Batch, BatchAccepted, BatchCreate, MemberOut
from gateway.errors import ApiError, from_decode_error, from_validation_error
from gateway.view import ExecutionRecord
from streams.codec import CodecError
from streams.records import ExecutionRequest
from streams.states import State
from streams.tracing import TraceContext

BATCH_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # fullmatch; its members' ids add "-<index>"


def _member(record: ExecutionRecord) -> MemberOut:
    judgement = record.execution().judgement if record.finished else None
    if judgement is None:
        return MemberOut(id=record.id, state=record.state)
    return MemberOut(id=record.id, state=record.state, passed=judgement.passed, total=judgement.total)


def _decode(raw: bytes) -> BatchCreate:
    try:
        return msgspec.json.decode(raw, type=BatchCreate)
    except msgspec.ValidationError as exc:
        raise from_validation_error(exc) from None
    except msgspec.DecodeError as exc:
        raise from_decode_error(exc) from None


def _requests(
    services: api.Services, body: BatchCreate, batch_id: str, tenant: str, now_ms: int
) -> list[ExecutionRequest]:
    """Every item as a validated request of the batch, or the 422 of the first bad one."""
    out: list[ExecutionRequest] = []
    seen: set[str] = set()
    for index, item in enumerate(body.executions):
        execution_id = item.id if item.id is not None else member_id(batch_id, index)
        if execution_id in seen:
            raise ApiError(422, "duplicate_id", f"id {execution_id!r} is twice in the batch", item_field(index, "id"))
        seen.add(execution_id)
        request = api.to_request(
            item, execution_id=execution_id, tenant=tenant, now_ms=now_ms, trace_id=TraceContext.new().trace_id
        )
        request = msgspec.structs.replace(request, batch_id=batch_id)
        # The same rules as POST /v1/executions, taken where the app takes them (processors.rules today,
        # core once the layers move lands), so this module never imports processors itself.
        verdict = api.validate(request, services.policy, services.language_names)  # type: ignore[attr-defined]
        if not isinstance(verdict, ExecutionRequest):
            raise ApiError(
                422, verdict.code, f"executions[{index}]: {verdict.message}", item_field(index, verdict.field)
            )
        out.append(request)
    return out


async def create_batch(request: Request) -> Response:
    services: api.Services = request.app.state.services
    principal = api.guard(request)
    body = _decode(await api._body(request, services.settings.gateway_max_body_bytes))
    if not body.executions:
        raise ApiError(422, "empty_batch", "a batch has at least one execution", "executions")
    if len(body.executions) > MAX_BATCH_EXECUTIONS:
        raise ApiError(
            422,
            "too_many_executions",
            f"a batch has at most {MAX_BATCH_EXECUTIONS} executions, got {len(body.executions)}",
            "executions",
        )
    batch_id = body.id if body.id is not None else uuid.uuid4().hex
    if not BATCH_ID.fullmatch(batch_id):
        raise ApiError(
            422, "invalid_id", "a batch id is 1-100 characters of [A-Za-z0-9._-], starting alphanumeric", "id"
        )
    owner = services.live.view.batches.tenant(batch_id)
    if owner is not None and not services.keys.open and owner != principal.tenant:
        raise ApiError(409, "id_in_use", f"batch id {batch_id!r} is in use", "id")
    now_ms = int(time.time() * 1000)
    requests = _requests(services, body, batch_id, principal.tenant, now_ms)
    for index, execution in enumerate(requests):
        record = services.live.get(execution.id)
        if record is not None and not api._visible(services, record, principal):
            raise ApiError(409, "id_in_use", f"id {execution.id!r} is in use", item_field(index, "id"))
    fresh = [r for r in requests if services.live.get(r.id) is None]
    try:
        encoded = [r.encode() for r in fresh]
    except (CodecError, ValueError, OverflowError) as exc:
        raise ApiError(422, "unencodable", f"a request cannot be encoded: {exc}", "executions") from None
    topics = services.topics  # each request, and its copy on sandbox.submissions for re-judging
    await asyncio.gather(
        *(api._produce(services, topics.requests, data, r.id) for r, data in zip(fresh, encoded, strict=True)),
        *(api._produce(services, topics.submissions, data, r.id) for r, data in zip(fresh, encoded, strict=True)),
    )
    for r in fresh:
        services.live.submitted(
            r.id,
            tenant=r.tenant,
            language=r.language,
            created_at_ms=now_ms,
            callback_url=r.callback_url,
            trace_id=r.trace_id,
            batch_id=batch_id,
        )
        services.metrics.submissions.labels("accepted").inc()
    accepted = []
    for r in requests:
        record = services.live.get(r.id)
        accepted.append(Accepted(id=r.id, state=record.state if record is not None else State.REQUESTED))
    return api.json_response(BatchAccepted(id=batch_id, executions=accepted), 202)


async def get_batch(request: Request) -> Response:
    services: api.Services = request.app.state.services
    principal = api.guard(request)
    batch_id = request.path_params["id"]
    batches = services.live.view.batches
    owner = batches.tenant(batch_id)
    if owner is None or (not services.keys.open and owner != principal.tenant):
        raise ApiError(404, "not_found", f"no batch with id {batch_id!r}", "id")
    # Only the caller's own members: a batch id that another tenant's Kafka producer also used does not
    # show that tenant's executions.
    found = (services.live.get(i) for i in batches.members(batch_id))
    records = [r for r in found if r is not None and api._visible(services, r, principal)]
    members = [_member(r) for r in records]
    finished = sum(1 for r in records if r.finished)
    return api.json_response(
        Batch(
            id=batch_id,
            total=len(members),
            finished=finished,
            done=finished == len(members),
            counts=state_counts(m.state.value for m in members),
            executions=members,
        )
    )


def routes() -> list[Route]:
    return [
        Route("/v1/batches", create_batch, methods=["POST"]),
        Route("/v1/batches/{id}", get_batch, methods=["GET"]),
    ]
