"""The public HTTP API's bodies as msgspec types.

The same types validate request bodies, encode responses and generate /openapi.json,
so the documented schema cannot drift from what the gateway accepts and answers.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from streams.states import Limit, State

# Avro `long` is 64-bit signed; anything outside cannot be produced, so the type refuses it up front.
_Long = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class LimitsBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Requested limits; an omitted or null limit takes the policy default."""

    wall_time_ms: _Long | None = None
    cpu_time_ms: _Long | None = None
    memory_mib: _Long | None = None
    processes: _Long | None = None
    output_bytes: _Long | None = None
    disk_mib: _Long | None = None


class CaseBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One test case of a judged execution; a null time limit takes the execution's."""

    stdin: str = ""
    args: list[str] = msgspec.field(default_factory=list)
    expected_stdout: str = ""
    wall_time_ms: _Long | None = None
    cpu_time_ms: _Long | None = None


class CheckerBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """How each case's stdout is judged: exact, trailing_whitespace (the default), tokens, float, program."""

    kind: str = "trailing_whitespace"
    abs_tolerance: float = 1e-6
    rel_tolerance: float = 1e-6
    language: Annotated[str | None, msgspec.Meta(description="program: the checker's language.")] = None
    code: Annotated[
        str | None,
        msgspec.Meta(description="program: gets input.txt expected.txt actual.txt (also as args); exit 0 accepts."),
    ] = None


class ExecutionCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """POST /v1/executions body."""

    language: str
    code: str
    stdin: str = ""
    args: list[str] = msgspec.field(default_factory=list)
    files: dict[str, str] = msgspec.field(default_factory=dict)
    network: bool = False
    limits: LimitsBody | None = None
    callback_url: str | None = None
    id: Annotated[str | None, msgspec.Meta(description="Optional idempotency key; generated when omitted.")] = None
    tests: Annotated[
        list[CaseBody], msgspec.Meta(description="Judge the program on these cases, each in a fresh sandbox.")
    ] = msgspec.field(default_factory=list)
    checker: CheckerBody | None = None
    stop_on_first_failure: bool = False


class Accepted(msgspec.Struct, kw_only=True):
    """202 for a submitted or cancelled execution (or a wait that ran out of time)."""

    id: str
    state: State


class Truncated(msgspec.Struct, kw_only=True):
    stdout: bool = False
    stderr: bool = False


class Timings(msgspec.Struct, kw_only=True):
    queued_ms: int = 0
    compile_ms: int = 0
    run_ms: int = 0
    total_ms: int = 0


class Usage(msgspec.Struct, kw_only=True):
    cpu_time_ms: int = 0
    memory_peak_kib: int = 0


class CaseOut(msgspec.Struct, kw_only=True):
    """One judged case: its verdict, what its run did, and for WRONG_ANSWER the first differing line."""

    index: int
    verdict: str
    state: State | None
    limit: Limit | None
    exit_code: int | None
    signal: int | None
    run_ms: int
    cpu_time_ms: int
    memory_peak_kib: int
    stdout: str
    stderr: str
    truncated: Truncated
    line: int | None
    expected_line: str | None
    actual_line: str | None
    message: str | None


class JudgementOut(msgspec.Struct, kw_only=True):
    """A judged execution's verdicts, one per case in order, and the summary."""

    passed: int
    total: int
    first_failure: Annotated[int | None, msgspec.Meta(description="Index of the first failing case.")]
    checker: str
    cases: list[CaseOut]


class AppliedLimitsOut(msgspec.Struct, kw_only=True):
    wall_time_ms: int
    cpu_time_ms: int
    memory_mib: int
    processes: int
    output_bytes: int
    disk_mib: int


class ProvenanceOut(msgspec.Struct, kw_only=True):
    """What a result was made from, so that a verdict can be explained and reproduced."""

    code_sha256: str
    files_sha256: dict[str, str]
    toolchain: str
    toolchain_version: str
    limits: AppliedLimitsOut | None
    backend: str
    executor: str


class Execution(msgspec.Struct, kw_only=True):
    """The execution object of the API contract."""

    id: str
    language: str
    state: State
    limit: Limit | None
    exit_code: int | None
    signal: int | None
    stdout: str
    stderr: str
    compile_output: str
    truncated: Truncated
    timings: Timings
    usage: Usage
    attempts: int
    created_at: str | None
    finished_at: str | None
    reason: Annotated[str | None, msgspec.Meta(description="Why, for REJECTED, CANCELLED and ERROR.")] = None
    field: Annotated[str | None, msgspec.Meta(description="For REJECTED: the request field at fault.")] = None
    trace_id: Annotated[
        str | None, msgspec.Meta(description="The W3C trace id that follows this execution through every stage.")
    ] = None
    judgement: Annotated[JudgementOut | None, msgspec.Meta(description="For a judged execution (tests).")] = None
    batch_id: Annotated[str | None, msgspec.Meta(description="The batch it was submitted in (POST /v1/batches).")] = (
        None
    )
    rejudge_of: Annotated[str | None, msgspec.Meta(description="The execution this one re-judges.")] = None
    provenance: Annotated[
        ProvenanceOut | None,
        msgspec.Meta(description="What the verdict was made from: input hashes, toolchain, limits, backend, executor."),
    ] = None


class Event(msgspec.Struct, kw_only=True):
    """One transition, as GET /v1/executions/{id}/events lists it."""

    seq: int
    state: State
    at: str
    at_ms: int
    attempt: int
    reason: str | None = None
    field: str | None = None
    executor: str | None = None


class LanguageOut(msgspec.Struct, kw_only=True):
    name: str
    version: str
    compiled: bool


class ErrorDetail(msgspec.Struct, kw_only=True):
    code: str
    message: str
    field: str | None


class ErrorBody(msgspec.Struct, kw_only=True):
    error: ErrorDetail


class Health(msgspec.Struct, kw_only=True):
    status: str
    kafka: bool | None = None
    view_ready: bool | None = None


RESPONSE_TYPES: tuple[type[msgspec.Struct], ...] = (
    Accepted,
    Execution,
    Event,
    LanguageOut,
    ErrorBody,
    Health,
)
