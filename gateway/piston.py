"""Pure: Piston's v2 API mapped onto the native one (issue 23, point 4).

A Piston execute request becomes an `ExecutionCreate` (the first file is the program, the others
its files; run_timeout → wall_time_ms, run_memory_limit → memory_mib); a native `Execution`
becomes Piston's `{language, version, run, compile}`. A field we cannot honour is refused (422
naming it) unless it is at Piston's default, since clients send every field. No I/O here.
"""

from __future__ import annotations

import math
import signal as signals
from collections.abc import Mapping
from typing import Any

import msgspec

from gateway.api_types import Execution as NativeExecution
from gateway.api_types import ExecutionCreate, LimitsBody
from gateway.compat_common import field_error

# Piston's own names for our languages, beside ours.
ALIASES: Mapping[str, tuple[str, ...]] = {
    "bash": ("sh",),
    "c": ("gcc",),
    "cpp": ("c++", "g++"),
    "csharp": ("cs", "c#", "mono", "csharp.net"),
    "go": ("golang",),
    "java": (),
    "javascript": ("js", "node", "node-javascript", "node-js"),
    "python": ("py", "py3", "python3"),
    "rust": ("rs",),
    "typescript": ("ts", "node-ts", "tsc"),
}
_BY_ALIAS = {alias: name for name, aliases in ALIASES.items() for alias in (name, *aliases)}
DEFAULT_COMPILE_TIMEOUT_MS = 10_000
DEFAULT_COMPILE_MEMORY_LIMIT = -1


class FileBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str | None = None
    content: str
    encoding: str = "utf8"


class ExecuteBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """POST /api/v2/execute, as Piston documents it."""

    language: str
    version: str = "*"
    files: list[FileBody]
    stdin: str = ""
    args: list[str] = msgspec.field(default_factory=list)
    compile_timeout: int | None = None
    run_timeout: int | None = None
    compile_cpu_time: int | None = None
    run_cpu_time: int | None = None
    compile_memory_limit: int | None = None
    run_memory_limit: int | None = None


def runtimes(available: Mapping[str, str]) -> list[dict[str, Any]]:
    """GET /api/v2/runtimes for the languages available here ({our name: its version})."""
    return [
        {"language": name, "version": version, "aliases": list(ALIASES.get(name, ())), "runtime": name}
        for name, version in sorted(available.items())
    ]


def resolve(language: str, version: str, available: Mapping[str, str]) -> str:
    """Our language for Piston's `language` and `version` ("*", our version, or a prefix of it)."""
    name = _BY_ALIAS.get(language.strip().lower())
    if name is None or name not in available:
        raise field_error("language", f"{language!r} is not a runtime here (see GET /api/v2/runtimes)", "invalid_value")
    ours = available[name]
    wanted = version.strip()
    if wanted in ("", "*", "latest") or ours == wanted or ours.startswith(wanted.rstrip(".x*") + "."):
        return name
    raise field_error("version", f"{language} {wanted} is not installed here; {name} is at {ours}", "invalid_value")


def to_create(body: ExecuteBody, *, language: str) -> ExecutionCreate:
    if body.compile_timeout not in (None, DEFAULT_COMPILE_TIMEOUT_MS):
        raise field_error("compile_timeout", "the compile's limits are the platform's; send 10000 or omit it")
    if body.compile_memory_limit not in (None, DEFAULT_COMPILE_MEMORY_LIMIT):
        raise field_error("compile_memory_limit", "the compile's limits are the platform's; send -1 or omit it")
    if body.compile_cpu_time is not None:
        raise field_error("compile_cpu_time", "the compile's limits are the platform's; omit it")
    if not body.files:
        raise field_error("files", "at least one file (the program) is required", "missing_field")
    for index, file in enumerate(body.files):
        if file.encoding != "utf8":
            raise field_error(f"files[{index}].encoding", "only utf8 is supported")
    extra = body.files[1:]
    for index, file in enumerate(extra, start=1):
        if not file.name:
            raise field_error(f"files[{index}].name", "every file beside the first needs a name", "missing_field")
    limits = LimitsBody(
        wall_time_ms=_positive("run_timeout", body.run_timeout),
        cpu_time_ms=_positive("run_cpu_time", body.run_cpu_time),
        memory_mib=(
            math.ceil(body.run_memory_limit / (1024 * 1024))
            if body.run_memory_limit is not None and body.run_memory_limit > 0
            else None
        ),
    )
    return ExecutionCreate(
        language=language,
        code=body.files[0].content,
        stdin=body.stdin,
        args=list(body.args),
        files={file.name: file.content for file in extra if file.name},
        limits=limits if any(msgspec.structs.astuple(limits)) else None,
    )


def _positive(name: str, value: int | None) -> int | None:
    if value is None or value == -1:
        return None
    if value <= 0:
        raise field_error(name, "must be a positive number of milliseconds (or -1)", "invalid_value")
    return value


NATIVE_FIELDS: Mapping[str, str] = {
    "language": "language",
    "code": "files[0].content",
    "stdin": "stdin",
    "args": "args",
    "files": "files",
    "limits.wall_time_ms": "run_timeout",
    "limits.cpu_time_ms": "run_cpu_time",
    "limits.memory_mib": "run_memory_limit",
}


def _signal_name(number: int | None) -> str | None:
    if not number:
        return None
    try:
        return signals.Signals(number).name
    except ValueError:
        return f"SIG{number}"


def _stage(
    stdout: str,
    stderr: str,
    code: int | None,
    signal: str | None,
    message: str | None,
    status: str | None,
    cpu_ms: int,
    wall_ms: int,
    memory_bytes: int,
) -> dict[str, Any]:
    return {
        "stdout": stdout,
        "stderr": stderr,
        "output": stdout + stderr,  # Piston interleaves; we keep the streams apart, so stdout then stderr
        "code": code,
        "signal": signal,
        "message": message,
        "status": status,
        "cpu_time": cpu_ms,
        "wall_time": wall_ms,
        "memory": memory_bytes,
    }


def to_response(execution: NativeExecution, *, version: str, compiled: bool) -> dict[str, Any]:
    """A finished native execution as Piston's response. No `run` after a compile error, as Piston."""
    state = str(execution.state)
    answer: dict[str, Any] = {"language": execution.language, "version": version}
    if compiled:
        failed = state == "COMPILE_ERROR"
        answer["compile"] = _stage(
            "",
            execution.compile_output,
            1 if failed else 0,
            None,
            "compilation failed" if failed else None,
            "RE" if failed else None,
            0,
            execution.timings.compile_ms,
            0,
        )
        if failed:
            return answer
    limit = None if execution.limit is None else str(execution.limit)
    status: str | None = None
    signal = _signal_name(execution.signal)
    if state == "LIMIT_EXCEEDED" and limit in ("wall_time", "cpu_time"):
        status, signal = "TO", signal or "SIGKILL"
    elif state == "LIMIT_EXCEEDED" and limit == "output":
        status = "OL"
    elif state == "LIMIT_EXCEEDED" and limit == "memory":
        status, signal = "SG", signal or "SIGKILL"
    elif signal is not None:
        status = "SG"
    elif state == "FAILED":
        status = "RE"
    elif state in ("ERROR", "CANCELLED", "REJECTED"):
        status = "XX"
    answer["run"] = _stage(
        execution.stdout,
        execution.stderr,
        execution.exit_code if signal is None else None,
        signal,
        execution.reason or (f"{limit} limit exceeded" if limit else None),
        status,
        execution.usage.cpu_time_ms,
        execution.timings.run_ms,
        execution.usage.memory_peak_kib * 1024,
    )
    return answer
