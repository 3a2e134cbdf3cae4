"""Shared value types and the backend Protocol: no I/O here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from streams.states import Limit, State

__all__ = [
    "Backend",
    "LanguageInfo",
    "Limit",
    "Limits",
    "OnOutput",
    "Outcome",
    "OutputChunk",
    "RunRequest",
    "State",
]


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-run limits; the defaults are the policy defaults. Units live in the names."""

    wall_time_ms: int = 5000
    cpu_time_ms: int = 5000
    memory_mib: int = 256
    processes: int = 64
    output_bytes: int = 1_048_576
    disk_mib: int = 64


@dataclass(frozen=True, slots=True)
class RunRequest:
    execution_id: str
    language: str
    code: str
    files: Mapping[str, str] = field(default_factory=dict)
    stdin: bytes = b""
    args: Sequence[str] = ()
    limits: Limits = Limits()
    network: bool = False


@dataclass(frozen=True, slots=True)
class OutputChunk:
    stream: Literal["stdout", "stderr"]
    data: bytes
    offset: int  # byte offset of data within that stream


@dataclass(frozen=True, slots=True)
class Outcome:
    state: State  # SUCCEEDED FAILED COMPILE_ERROR LIMIT_EXCEEDED CANCELLED ERROR
    limit: Limit | None
    exit_code: int | None
    signal: int | None
    stdout: bytes
    stderr: bytes
    compile_output: bytes
    truncated_stdout: bool
    truncated_stderr: bool
    cpu_time_ms: int
    memory_peak_kib: int
    compile_ms: int
    run_ms: int
    error: str | None = None  # for ERROR: the platform's reason


@dataclass(frozen=True, slots=True)
class LanguageInfo:
    name: str
    version: str
    compiled: bool
    available: bool


OnOutput = Callable[[OutputChunk], Awaitable[None]]


class Backend(Protocol):
    async def run(self, request: RunRequest, on_output: OnOutput | None = None) -> Outcome: ...

    async def cancel(self, execution_id: str) -> bool:
        """True if the run was running here; that run then ends CANCELLED."""
        ...

    async def languages(self) -> list[LanguageInfo]: ...

    async def close(self) -> None: ...
