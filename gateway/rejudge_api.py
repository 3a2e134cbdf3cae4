"""POST /v1/rejudge and DELETE /v1/executions/{id}/submission (issue 23, point 6).

A re-judge takes past executions (their ids, or a batch id) and new tests and/or a new checker,
reads their code from sandbox.submissions (gateway/submissions.py), and submits each again as a
new execution with `rejudge_of` naming the original. The new executions form a batch of their
own, so GET /v1/batches/{id} follows them. Only the tenant's own submissions can be re-judged or
deleted; another tenant's do not exist for it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, cast

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from core.batches import MAX_BATCH_EXECUTIONS, member_id
from gateway import app as api
from gateway.auth import Principal
from gateway.batch_types import RejudgeAccepted, RejudgeCreate, Rejudged
from gateway.batches_api import BATCH_ID
from gateway.errors import ApiError, from_decode_error, from_validation_error
from gateway.submissions import of_batch, read_submissions
from streams.records import Checker, ExecutionRequest, JudgeCase
from streams.states import State
from streams.tracing import TraceContext


def rejudge_request(
    original: ExecutionRequest, body: RejudgeCreate, *, execution_id: str, batch_id: str, now_ms: int
) -> ExecutionRequest:
    """The original submission again (same code, files, limits, tenant), with the new tests/checker."""
    tests = original.tests
    if body.tests is not None:
        tests = [JudgeCase(**msgspec.structs.asdict(case)) for case in body.tests]
    checker = original.checker
    if body.checker is not None:
        checker = Checker(**msgspec.structs.asdict(body.checker))
    return msgspec.structs.replace(
        original,
        id=execution_id,
        tests=tests,
        checker=checker,
        batch_id=batch_id,
        rejudge_of=original.id,
        created_at_ms=now_ms,
        trace_id=TraceContext.new().trace_id,
        callback_url=None,
    )


def _owned(services: api.Services, request: ExecutionRequest, principal: Principal) -> bool:
    return services.keys.open or request.tenant == principal.tenant


def _decode(raw: bytes) -> RejudgeCreate:
    try:
        return msgspec.json.decode(raw, type=RejudgeCreate)
    except msgspec.ValidationError as exc:
        raise from_validation_error(exc) from None
    except msgspec.DecodeError as exc:
        raise from_decode_error(exc) from None


async def _originals(services: api.Services, body: RejudgeCreate, principal: Principal) -> list[ExecutionRequest]:
    submissions = await read_submissions(services.settings)
    if body.batch_id is not None:
        order = services.live.view.batches.members(body.batch_id)
        found = [s for s in of_batch(submissions, body.batch_id, order) if _owned(services, s, principal)]
        if not found:
            raise ApiError(404, "not_found", f"no submissions of batch {body.batch_id!r}", "batch_id")
        return found
    originals = []
    for index, execution_id in enumerate(body.executions):
        submission = submissions.get(execution_id)
        if submission is None or not _owned(services, submission, principal):
            raise ApiError(
                404,
                "not_found",
                f"no submission of execution {execution_id!r} (or it was deleted)",
                f"executions[{index}]",
            )
        originals.append(submission)
    return originals


async def rejudge(request: Request) -> Response:
    services: api.Services = request.app.state.services
    principal = api.guard(request)
    body = _decode(await api._body(request, services.settings.gateway_max_body_bytes))
    if (body.batch_id is None) == (not body.executions):
        raise ApiError(422, "invalid_rejudge", "give either executions (ids) or batch_id", "executions")
    if len(body.executions) > MAX_BATCH_EXECUTIONS:
        raise ApiError(422, "too_many_executions", f"at most {MAX_BATCH_EXECUTIONS} executions", "executions")
    if body.tests is None and body.checker is None:
        raise ApiError(422, "nothing_to_change", "a re-judge brings new tests, a new checker or both", "tests")
    batch_id = body.id if body.id is not None else f"rejudge-{uuid.uuid4().hex}"
    if not BATCH_ID.fullmatch(batch_id):
        raise ApiError(422, "invalid_id", "a batch id is 1-100 characters of [A-Za-z0-9._-]", "id")
    if services.live.view.batches.tenant(batch_id) is not None:
        raise ApiError(409, "id_in_use", f"batch id {batch_id!r} is in use", "id")
    originals = await _originals(services, body, principal)
    if len(originals) > MAX_BATCH_EXECUTIONS:
        raise ApiError(422, "too_many_executions", f"at most {MAX_BATCH_EXECUTIONS} executions", "batch_id")
    now_ms = int(time.time() * 1000)
    fresh = []
    for index, original in enumerate(originals):
        new = rejudge_request(original, body, execution_id=member_id(batch_id, index), batch_id=batch_id, now_ms=now_ms)
        verdict: Any = api.validate(new, services.policy, services.language_names)  # type: ignore[attr-defined]
        if not isinstance(verdict, ExecutionRequest):
            field = verdict.field if verdict.field.startswith(("tests", "checker")) else f"executions[{index}]"
            raise ApiError(422, verdict.code, f"re-judging {original.id}: {verdict.message}", field)
        fresh.append(new)
    encoded = [r.encode() for r in fresh]
    topics = services.topics
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
            callback_url=None,
            trace_id=r.trace_id,
            batch_id=batch_id,
            rejudge_of=r.rejudge_of,
        )
        services.metrics.submissions.labels("accepted").inc()
    out = [Rejudged(id=r.id, state=State.REQUESTED, rejudge_of=r.rejudge_of or "") for r in fresh]
    return api.json_response(RejudgeAccepted(id=batch_id, executions=out), 202)


async def delete_submission(request: Request) -> Response:
    """Tombstone one of the tenant's own submissions: it can no longer be re-judged."""
    services: api.Services = request.app.state.services
    principal = api.guard(request)
    execution_id = request.path_params["id"]
    submission = (await read_submissions(services.settings)).get(execution_id)
    if submission is None or not _owned(services, submission, principal):
        raise ApiError(404, "not_found", f"no submission of execution {execution_id!r}", "id")
    # A tombstone: the record with no value, which compaction keeps until it removes the key.
    await api._produce(services, services.topics.submissions, cast(bytes, None), execution_id)
    return Response(status_code=204)


def routes() -> list[Route]:
    return [
        Route("/v1/rejudge", rejudge, methods=["POST"]),
        Route("/v1/executions/{id}/submission", delete_submission, methods=["DELETE"]),
    ]
