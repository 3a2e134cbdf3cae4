"""The bodies of the batch and re-judge routes (gateway/batches_api.py, gateway/rejudge_api.py) as
msgspec types: they validate requests, encode answers and generate /openapi.json."""

from __future__ import annotations

from typing import Annotated

import msgspec

from core.batches import MAX_BATCH_EXECUTIONS
from gateway.api_types import Accepted, CaseBody, CheckerBody, ExecutionCreate
from streams.states import State


class BatchCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """POST /v1/batches body."""

    executions: Annotated[
        list[ExecutionCreate], msgspec.Meta(description=f"1 to {MAX_BATCH_EXECUTIONS} executions, judged or not.")
    ]
    id: Annotated[
        str | None, msgspec.Meta(description="Optional idempotency key for the batch; generated when omitted.")
    ] = None


class BatchAccepted(msgspec.Struct, kw_only=True):
    """202 for a submitted batch: its id and its executions' ids, in the order given."""

    id: str
    executions: list[Accepted]


class MemberOut(msgspec.Struct, kw_only=True):
    id: str
    state: State
    passed: int | None = None  # judged: the cases accepted
    total: int | None = None  # judged: the cases


class Batch(msgspec.Struct, kw_only=True):
    """GET /v1/batches/{id}: every member's state, and how many are in each state."""

    id: str
    total: int
    finished: int
    done: bool
    counts: dict[str, int]
    executions: list[MemberOut]


class RejudgeCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """POST /v1/rejudge body: `executions` or `batch_id`, and `tests` and/or `checker`."""

    executions: Annotated[list[str], msgspec.Meta(description="Past execution ids to run again.")] = msgspec.field(
        default_factory=list
    )
    batch_id: Annotated[str | None, msgspec.Meta(description="Or: every execution of this past batch.")] = None
    tests: Annotated[list[CaseBody] | None, msgspec.Meta(description="The new cases (default: the original's).")] = None
    checker: Annotated[CheckerBody | None, msgspec.Meta(description="The new checker (default: the original's).")] = (
        None
    )
    id: Annotated[str | None, msgspec.Meta(description="The new batch's id; generated when omitted.")] = None


class Rejudged(msgspec.Struct, kw_only=True):
    id: str
    state: State
    rejudge_of: str


class RejudgeAccepted(msgspec.Struct, kw_only=True):
    """202: the batch of the new executions, each linked to its original."""

    id: str
    executions: list[Rejudged]
