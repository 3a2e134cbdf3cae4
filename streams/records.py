"""Typed views of the Avro records in `schemas/`.

`schemas/*.avsc` is the source of truth; these Structs mirror the newest version of
each record, and a test checks that their fields match the schema exactly.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Self, TypeVar

import msgspec

from streams.codec import Codec, default_codec
from streams.states import State


class Record(msgspec.Struct, kw_only=True, frozen=True):
    SCHEMA: ClassVar[str]

    def to_avro(self) -> dict[str, Any]:
        return {f: _to_avro(getattr(self, f)) for f in self.__struct_fields__}

    @classmethod
    def from_avro(cls, fields: dict[str, Any]) -> Self:
        return msgspec.convert(fields, cls, strict=False)

    def encode(self, codec: Codec | None = None) -> bytes:
        return (codec or default_codec()).encode(self.SCHEMA, self.to_avro())

    @classmethod
    def decode(cls, data: bytes, codec: Codec | None = None) -> Self:
        _, fields = (codec or default_codec()).decode(data, expect=cls.SCHEMA)
        return cls.from_avro(fields)


def _to_avro(value: Any) -> Any:
    if isinstance(value, msgspec.Struct):
        return {f: _to_avro(getattr(value, f)) for f in value.__struct_fields__}
    if isinstance(value, State):
        return value.value
    if isinstance(value, list | tuple):
        return [_to_avro(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_avro(v) for k, v in value.items()}
    return value


class RequestLimits(msgspec.Struct, kw_only=True, frozen=True):
    """Requested limits; None takes the policy default."""

    wall_time_ms: int | None = None
    cpu_time_ms: int | None = None
    memory_mib: int | None = None
    processes: int | None = None
    output_bytes: int | None = None
    disk_mib: int | None = None


class JudgeCase(msgspec.Struct, kw_only=True, frozen=True):
    """One case of a judged run (issue 23); None limits take the request's."""

    stdin: str = ""
    args: list[str] = msgspec.field(default_factory=list)
    expected_stdout: str = ""
    wall_time_ms: int | None = None
    cpu_time_ms: int | None = None


class Checker(msgspec.Struct, kw_only=True, frozen=True):
    """How a case's stdout is judged (core/judging.py); `language` and `code` for the `program` kind."""

    kind: str = "trailing_whitespace"
    abs_tolerance: float = 1e-6
    rel_tolerance: float = 1e-6
    language: str | None = None
    code: str | None = None


class ExecutionRequest(Record, frozen=True, kw_only=True):
    SCHEMA: ClassVar[str] = "ExecutionRequest"
    id: str
    language: str
    code: str
    stdin: str = ""
    args: list[str] = msgspec.field(default_factory=list)
    files: dict[str, str] = msgspec.field(default_factory=dict)
    network: bool = False
    limits: RequestLimits = msgspec.field(default_factory=RequestLimits)
    callback_url: str | None = None
    tenant: str = "default"
    priority: int = 0
    max_attempts: int | None = None
    trace_id: str | None = None
    created_at_ms: int = 0
    tests: list[JudgeCase] = msgspec.field(default_factory=list)
    checker: Checker | None = None
    stop_on_first_failure: bool = False
    batch_id: str | None = None
    rejudge_of: str | None = None


class CaseVerdict(msgspec.Struct, kw_only=True, frozen=True):
    """One judged case: its verdict (core.judging.Verdict), what its run did, where its output differs."""

    index: int
    verdict: str
    state: str | None = None
    limit: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    run_ms: int = 0
    cpu_time_ms: int = 0
    memory_peak_kib: int = 0
    stdout: bytes = b""
    stderr: bytes = b""
    truncated_stdout: bool = False
    truncated_stderr: bool = False
    line: int | None = None
    expected_line: str | None = None
    actual_line: str | None = None
    message: str | None = None


class Judgement(msgspec.Struct, kw_only=True, frozen=True):
    """A judged run's verdicts, one per test case in order, and its summary."""

    passed: int = 0
    total: int = 0
    first_failure: int | None = None
    checker: str = "trailing_whitespace"
    cases: list[CaseVerdict] = msgspec.field(default_factory=list)


class AppliedLimits(msgspec.Struct, kw_only=True, frozen=True):
    """The limits a run got, after the policy defaults."""

    wall_time_ms: int = 0
    cpu_time_ms: int = 0
    memory_mib: int = 0
    processes: int = 0
    output_bytes: int = 0
    disk_mib: int = 0


class Provenance(msgspec.Struct, kw_only=True, frozen=True):
    """What a verdict was made from (core/provenance.py): hashes of the inputs, the toolchain, the limits, where."""

    code_sha256: str = ""
    files_sha256: dict[str, str] = msgspec.field(default_factory=dict)
    toolchain: str = ""
    toolchain_version: str = ""
    limits: AppliedLimits | None = None
    backend: str = ""
    executor: str = ""


class RunOutcome(msgspec.Struct, kw_only=True, frozen=True):
    limit: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    stdout: bytes = b""
    stderr: bytes = b""
    compile_output: bytes = b""
    truncated_stdout: bool = False
    truncated_stderr: bool = False
    cpu_time_ms: int = 0
    memory_peak_kib: int = 0
    compile_ms: int = 0
    run_ms: int = 0
    judgement: Judgement | None = None
    provenance: Provenance | None = None


class ExecutionEvent(Record, frozen=True, kw_only=True):
    SCHEMA: ClassVar[str] = "ExecutionEvent"
    execution_id: str
    seq: int
    state: State
    at_ms: int
    tenant: str = "default"
    attempt: int = 0
    reason: str | None = None
    field: str | None = None
    executor: str | None = None
    lease_until_ms: int | None = None
    started_at_ms: int | None = None
    max_attempts: int = 1
    request: bytes | None = None
    outcome: RunOutcome | None = None

    @property
    def key(self) -> bytes:
        return f"{self.execution_id}:{self.seq}".encode()

    def decoded_request(self, codec: Codec | None = None) -> ExecutionRequest | None:
        return None if self.request is None else ExecutionRequest.decode(self.request, codec)


class ExecutionResult(Record, frozen=True, kw_only=True):
    SCHEMA: ClassVar[str] = "ExecutionResult"
    id: str
    language: str
    tenant: str = "default"
    state: State
    limit: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    stdout: bytes = b""
    stderr: bytes = b""
    compile_output: bytes = b""
    truncated_stdout: bool = False
    truncated_stderr: bool = False
    queued_ms: int = 0
    compile_ms: int = 0
    run_ms: int = 0
    total_ms: int = 0
    cpu_time_ms: int = 0
    memory_peak_kib: int = 0
    attempts: int = 0
    created_at_ms: int
    finished_at_ms: int
    reason: str | None = None
    field: str | None = None
    callback_url: str | None = None
    judgement: Judgement | None = None
    batch_id: str | None = None
    rejudge_of: str | None = None
    provenance: Provenance | None = None


class LogChunk(Record, frozen=True, kw_only=True):
    SCHEMA: ClassVar[str] = "LogChunk"
    execution_id: str
    attempt: int = 1
    stream: Literal["stdout", "stderr"]
    offset: int
    data: bytes
    at_ms: int


class CancelRequest(Record, frozen=True, kw_only=True):
    SCHEMA: ClassVar[str] = "CancelRequest"
    execution_id: str
    requested_at_ms: int
    reason: str | None = None
    requested_by: str | None = None


R = TypeVar("R", bound=Record)
ALL_RECORDS: tuple[type[Record], ...] = (ExecutionRequest, ExecutionEvent, ExecutionResult, LogChunk, CancelRequest)
