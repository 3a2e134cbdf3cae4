"""Pure: Judge0 CE's API mapped onto the native one (issue 23, point 3).

A Judge0 submission becomes an `ExecutionCreate`: `source_code` → code, `language_id` → our
language, `expected_output` → one judged test case (native judging, trailing-whitespace checker,
as Judge0 compares), the time/memory/process limits → our limits. A field we cannot honour is
refused (422 naming it) unless it is null or at Judge0's documented default, since published
clients send every field. A native `Execution` becomes a Judge0 submission with Judge0's status
ids. No I/O here: gateway/judge0_routes.py does the HTTP.
"""

from __future__ import annotations

import base64
import binascii
import math
import shlex
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from gateway.api_types import CaseBody, CaseOut, ExecutionCreate, LimitsBody
from gateway.api_types import Execution as NativeExecution
from gateway.compat_common import field_error
from gateway.errors import ApiError

JUDGE0_VERSION = "1.13.1"  # the CE release whose ids the official SDK maps its language aliases with
MAX_BATCH_SIZE = 20  # Judge0's max_submission_batch_size default


@dataclass(frozen=True, slots=True)
class Status:
    id: int
    description: str


IN_QUEUE = Status(1, "In Queue")
PROCESSING = Status(2, "Processing")
ACCEPTED = Status(3, "Accepted")
WRONG_ANSWER = Status(4, "Wrong Answer")
TIME_LIMIT_EXCEEDED = Status(5, "Time Limit Exceeded")
COMPILATION_ERROR = Status(6, "Compilation Error")
RE_SIGSEGV = Status(7, "Runtime Error (SIGSEGV)")
RE_SIGXFSZ = Status(8, "Runtime Error (SIGXFSZ)")
RE_SIGFPE = Status(9, "Runtime Error (SIGFPE)")
RE_SIGABRT = Status(10, "Runtime Error (SIGABRT)")
RE_NZEC = Status(11, "Runtime Error (NZEC)")
RE_OTHER = Status(12, "Runtime Error (Other)")
INTERNAL_ERROR = Status(13, "Internal Error")
EXEC_FORMAT_ERROR = Status(14, "Exec Format Error")
STATUSES: tuple[Status, ...] = (
    IN_QUEUE,
    PROCESSING,
    ACCEPTED,
    WRONG_ANSWER,
    TIME_LIMIT_EXCEEDED,
    COMPILATION_ERROR,
    RE_SIGSEGV,
    RE_SIGXFSZ,
    RE_SIGFPE,
    RE_SIGABRT,
    RE_NZEC,
    RE_OTHER,
    INTERNAL_ERROR,
    EXEC_FORMAT_ERROR,
)
_BY_SIGNAL = {11: RE_SIGSEGV, 25: RE_SIGXFSZ, 8: RE_SIGFPE, 6: RE_SIGABRT}


@dataclass(frozen=True, slots=True)
class Judge0Language:
    id: int
    judge0_name: str  # the name Judge0 CE gives this id
    language: str  # ours


# Judge0 CE's ids (its published /languages list, 1.13.1 and the later CE additions 91-95) for the
# languages we run. Several ids name one of our languages: they all run our one toolchain.
LANGUAGES: tuple[Judge0Language, ...] = (
    Judge0Language(46, "Bash (5.0.0)", "bash"),
    Judge0Language(48, "C (GCC 7.4.0)", "c"),
    Judge0Language(49, "C (GCC 8.3.0)", "c"),
    Judge0Language(50, "C (GCC 9.2.0)", "c"),
    Judge0Language(51, "C# (Mono 6.6.0.161)", "csharp"),
    Judge0Language(52, "C++ (GCC 7.4.0)", "cpp"),
    Judge0Language(53, "C++ (GCC 8.3.0)", "cpp"),
    Judge0Language(54, "C++ (GCC 9.2.0)", "cpp"),
    Judge0Language(60, "Go (1.13.5)", "go"),
    Judge0Language(62, "Java (OpenJDK 13.0.1)", "java"),
    Judge0Language(63, "JavaScript (Node.js 12.14.0)", "javascript"),
    Judge0Language(71, "Python (3.8.1)", "python"),
    Judge0Language(73, "Rust (1.40.0)", "rust"),
    Judge0Language(74, "TypeScript (3.7.4)", "typescript"),
    Judge0Language(91, "Java (JDK 17.0.6)", "java"),
    Judge0Language(92, "Python (3.11.2)", "python"),
    Judge0Language(93, "JavaScript (Node.js 18.15.0)", "javascript"),
    Judge0Language(94, "TypeScript (5.0.3)", "typescript"),
    Judge0Language(95, "Go (1.18.5)", "go"),
)
BY_ID: Mapping[int, Judge0Language] = {lang.id: lang for lang in LANGUAGES}
_LABELS = {
    "bash": "Bash",
    "c": "C (GCC",
    "cpp": "C++ (GCC",
    "csharp": "C# (Mono",
    "go": "Go",
    "java": "Java (OpenJDK",
    "javascript": "JavaScript (Node.js",
    "python": "Python",
    "rust": "Rust",
    "typescript": "TypeScript",
}


def language_name(language: str, version: str) -> str:
    """Judge0's naming, with our toolchain's version: "C (GCC 12.2.0)", "Python (3.11.2)"."""
    label = _LABELS.get(language, language)
    if "(" in label:
        return f"{label} {version})"
    return f"{label} ({version})"


def language_list(available: Mapping[str, str]) -> list[dict[str, Any]]:
    """GET /languages: each id of a language available here ({our name: its version})."""
    return [
        {"id": lang.id, "name": language_name(lang.language, available[lang.language])}
        for lang in sorted(LANGUAGES, key=lambda lang: lang.id)
        if lang.language in available
    ]


class SubmissionBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A Judge0 submission, every field Judge0 CE documents; None = not sent (or sent as null)."""

    source_code: str | None = None
    language_id: int | None = None
    compiler_options: str | None = None
    command_line_arguments: str | None = None
    stdin: str | None = None
    expected_output: str | None = None
    cpu_time_limit: float | None = None
    cpu_extra_time: float | None = None
    wall_time_limit: float | None = None
    memory_limit: float | None = None
    stack_limit: int | None = None
    max_processes_and_or_threads: int | None = None
    enable_per_process_and_thread_time_limit: bool | None = None
    enable_per_process_and_thread_memory_limit: bool | None = None
    max_file_size: int | None = None
    redirect_stderr_to_stdout: bool | None = None
    enable_network: bool | None = None
    number_of_runs: int | None = None
    additional_files: str | None = None
    callback_url: str | None = None


class BatchBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    submissions: list[SubmissionBody]


# Fields we cannot honour, with Judge0's defaults (accepted as if not sent) and why we refuse the rest.
UNSUPPORTED: Mapping[str, tuple[Collection[object], str]] = {
    "compiler_options": (("",), "compiler options are not supported; the toolchain's own flags apply"),
    "cpu_extra_time": ((1, 1.0), "no extra CPU time past cpu_time_limit is granted here; raise cpu_time_limit"),
    "stack_limit": ((64000,), "the stack size is not configurable here (the memory limit bounds it)"),
    "enable_per_process_and_thread_time_limit": ((False,), "time limits apply to the whole run only"),
    "enable_per_process_and_thread_memory_limit": ((False,), "memory limits apply to the whole run only"),
    "redirect_stderr_to_stdout": ((False,), "stdout and stderr are always captured separately"),
    "number_of_runs": ((1,), "each submission runs once"),
    "additional_files": (("",), "additional files (a zip) are not supported; use the native API's files"),
    "callback_url": (("",), "Judge0-shaped callbacks are not sent; use the native API's webhooks"),
}


def refused_fields(body: SubmissionBody) -> list[str]:
    """The unsupported fields set to something other than null or Judge0's default, in field order."""
    return [
        name
        for name, (defaults, _) in UNSUPPORTED.items()
        if (value := getattr(body, name)) is not None and value not in defaults
    ]


def _decoded(name: str, value: str | None, b64: bool) -> str | None:
    if value is None or not b64:
        return value
    try:
        return base64.b64decode("".join(value.split()), validate=True).decode("utf-8")  # line breaks allowed
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise field_error(name, "is not base64 of UTF-8 text (base64_encoded=true)", "invalid_base64") from None


def _positive(name: str, value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise field_error(name, "must be a positive number", "invalid_value")
    return value


def to_create(body: SubmissionBody, *, execution_id: str, base64_encoded: bool) -> ExecutionCreate:
    """The native request for a Judge0 submission, or an ApiError naming the Judge0 field at fault."""
    refused = refused_fields(body)
    if refused:
        name = refused[0]
        raise field_error(name, f"{UNSUPPORTED[name][1]} (got {getattr(body, name)!r})")
    if body.source_code is None:
        raise field_error("source_code", "is required", "missing_field")
    if body.language_id is None:
        raise field_error("language_id", "is required", "missing_field")
    language = BY_ID.get(body.language_id)
    if language is None:
        raise field_error(
            "language_id", f"no language with id {body.language_id} here (see GET /languages)", "invalid_value"
        )
    code = _decoded("source_code", body.source_code, base64_encoded) or ""
    stdin = _decoded("stdin", body.stdin, base64_encoded) or ""
    expected = _decoded("expected_output", body.expected_output, base64_encoded)
    try:
        args = shlex.split(body.command_line_arguments or "")
    except ValueError as exc:
        raise field_error(
            "command_line_arguments", f"cannot be split as a shell would: {exc}", "invalid_value"
        ) from None
    cpu_s = _positive("cpu_time_limit", body.cpu_time_limit)
    wall_s = _positive("wall_time_limit", body.wall_time_limit)
    memory_kb = _positive("memory_limit", body.memory_limit)
    file_kb = _positive("max_file_size", body.max_file_size)
    processes = _positive("max_processes_and_or_threads", body.max_processes_and_or_threads)
    limits = LimitsBody(
        cpu_time_ms=round(cpu_s * 1000) if cpu_s is not None else None,
        wall_time_ms=round(wall_s * 1000) if wall_s is not None else None,
        memory_mib=math.ceil(memory_kb / 1024) if memory_kb is not None else None,
        output_bytes=int(file_kb) * 1024 if file_kb is not None else None,
        processes=int(processes) if processes is not None else None,
    )
    tests = [CaseBody(stdin=stdin, args=args, expected_stdout=expected)] if expected is not None else []
    return ExecutionCreate(
        id=execution_id,
        language=language.language,
        code=code,
        stdin="" if tests else stdin,  # a judged request's stdin and args are its case's
        args=[] if tests else args,
        network=bool(body.enable_network),
        limits=limits if any(msgspec.structs.astuple(limits)) else None,
        tests=tests,
    )


# The native request's fields → the Judge0 field a native refusal is about.
NATIVE_FIELDS: Mapping[str, str] = {
    "language": "language_id",
    "code": "source_code",
    "stdin": "stdin",
    "args": "command_line_arguments",
    "network": "enable_network",
    "limits.cpu_time_ms": "cpu_time_limit",
    "limits.wall_time_ms": "wall_time_limit",
    "limits.memory_mib": "memory_limit",
    "limits.output_bytes": "max_file_size",
    "limits.processes": "max_processes_and_or_threads",
    "tests.*": "expected_output",
}


def status_of(execution: NativeExecution) -> Status:
    """The Judge0 status of a native execution (a judged one by its single case's verdict)."""
    state = str(execution.state)
    if state in ("REQUESTED", "VALIDATED", "QUEUED", "SCHEDULED"):
        return IN_QUEUE
    if state == "STARTED":
        return PROCESSING
    if state == "COMPILE_ERROR":
        return COMPILATION_ERROR
    if state in ("ERROR", "CANCELLED", "REJECTED"):
        return INTERNAL_ERROR
    judgement = execution.judgement
    if judgement is not None and judgement.cases:
        return _verdict_status(judgement.cases[0])
    return _run_status(state, None if execution.limit is None else str(execution.limit), execution.signal)


def _run_status(state: str, limit: str | None, signal: int | None) -> Status:
    if state == "SUCCEEDED":
        return ACCEPTED
    if state == "LIMIT_EXCEEDED":
        if limit in ("wall_time", "cpu_time"):
            return TIME_LIMIT_EXCEEDED
        if limit in ("output", "disk"):
            return RE_SIGXFSZ
        return _BY_SIGNAL.get(signal or 0, RE_OTHER)
    if signal:  # FAILED
        return _BY_SIGNAL.get(signal, RE_OTHER)
    return RE_NZEC


def _verdict_status(case: CaseOut) -> Status:
    verdict = case.verdict
    if verdict == "ACCEPTED":
        return ACCEPTED
    if verdict == "WRONG_ANSWER":
        return WRONG_ANSWER
    if verdict == "TIME_LIMIT":
        return TIME_LIMIT_EXCEEDED
    if verdict == "OUTPUT_LIMIT":
        return RE_SIGXFSZ
    if verdict in ("MEMORY_LIMIT", "RUNTIME_ERROR"):
        if case.signal:
            return _BY_SIGNAL.get(case.signal, RE_OTHER)
        return RE_NZEC if verdict == "RUNTIME_ERROR" and case.exit_code else RE_OTHER
    return INTERNAL_ERROR  # CHECKER_ERROR, INTERNAL_ERROR, SKIPPED without a compile error


def _encoded(text: str | None, b64: bool) -> str | None:
    if not text:
        return None  # Judge0 answers null for an empty stream
    return base64.b64encode(text.encode("utf-8")).decode("ascii") if b64 else text


def _seconds(ms: int | None) -> str | None:
    return None if ms is None else f"{ms / 1000:.3f}"


DEFAULT_FIELDS: tuple[str, ...] = (
    "token",
    "stdout",
    "stderr",
    "compile_output",
    "message",
    "status",
    "time",
    "memory",
)
ALL_FIELDS: tuple[str, ...] = (
    *DEFAULT_FIELDS,
    "exit_code",
    "exit_signal",
    "wall_time",
    "created_at",
    "finished_at",
    "status_id",
    "language",
)


def token_of(execution_id: str) -> str:
    """A 32-hex execution id in Judge0's dashed UUID form (the official SDK parses the token as a UUID)."""
    if len(execution_id) == 32 and all(c in "0123456789abcdef" for c in execution_id):
        i = execution_id
        return f"{i[:8]}-{i[8:12]}-{i[12:16]}-{i[16:20]}-{i[20:]}"
    return execution_id


def execution_id_of(token: str) -> str:
    """The inverse of `token_of`."""
    stripped = token.replace("-", "").lower()
    if len(stripped) == 32 and all(c in "0123456789abcdef" for c in stripped):
        return stripped
    return token


def parse_fields(raw: str | None) -> tuple[str, ...]:
    """The `fields` query parameter: absent → Judge0's defaults, "*" → all, else the named ones we know."""
    if raw is None or not raw.strip():
        return DEFAULT_FIELDS
    names = tuple(name.strip() for name in raw.split(",") if name.strip())
    if "*" in names:
        return ALL_FIELDS
    unknown = [name for name in names if name not in ALL_FIELDS]
    if unknown:
        raise ApiError(
            422,
            "invalid_query",
            f"fields: unknown field {unknown[0]!r}; this server answers {', '.join(ALL_FIELDS)} (or *)",
            "fields",
        )
    return names


def to_submission(
    execution: NativeExecution, *, fields: tuple[str, ...], base64_encoded: bool, language_ids: Mapping[str, int]
) -> dict[str, Any]:
    """A native execution as the Judge0 submission object, restricted to `fields`."""
    status = status_of(execution)
    case = execution.judgement.cases[0] if execution.judgement is not None and execution.judgement.cases else None
    finished = status not in (IN_QUEUE, PROCESSING)
    cpu_ms = case.cpu_time_ms if case is not None else execution.usage.cpu_time_ms
    run_ms = case.run_ms if case is not None else execution.timings.run_ms
    memory_kib = case.memory_peak_kib if case is not None else execution.usage.memory_peak_kib
    stdout = case.stdout if case is not None and not execution.stdout else execution.stdout
    message: str | None = execution.reason
    if case is not None and case.message:
        message = case.message
    elif status is TIME_LIMIT_EXCEEDED:
        message = "Time limit exceeded"
    language_id = language_ids.get(execution.language)
    values: dict[str, Any] = {
        "token": token_of(execution.id),
        "stdout": _encoded(stdout, base64_encoded),
        "stderr": _encoded(execution.stderr, base64_encoded),
        "compile_output": _encoded(execution.compile_output, base64_encoded),
        "message": message,
        "status": {"id": status.id, "description": status.description},
        "status_id": status.id,
        "time": _seconds(cpu_ms) if finished else None,
        "wall_time": _seconds(run_ms) if finished else None,
        "memory": memory_kib if finished else None,
        "exit_code": (case.exit_code if case is not None else execution.exit_code) if finished else None,
        "exit_signal": (case.signal if case is not None else execution.signal) if finished else None,
        "created_at": execution.created_at,
        "finished_at": execution.finished_at if finished else None,
        "language": {"id": language_id, "name": execution.language} if language_id is not None else None,
    }
    return {name: values[name] for name in fields}


def default_language_ids() -> dict[str, int]:
    """Our language → the Judge0 id answered for it (the newest CE id that names it)."""
    ids: dict[str, int] = {}
    for lang in LANGUAGES:
        ids[lang.language] = lang.id
    return ids


def config_info(policy: Any, *, max_wait_ms: int) -> dict[str, Any]:
    """GET /config_info: Judge0's configuration object with our policy's defaults and maxima (`policy`
    has `defaults` and `maxima` with wall_time_ms, cpu_time_ms, memory_mib, processes, output_bytes);
    what we refuse is reported as disabled."""
    low, high = policy.defaults, policy.maxima
    return {
        "maintenance_mode": False,
        "enable_wait_result": True,
        "enable_compiler_options": False,
        "allowed_languages_for_compile_options": [],
        "enable_command_line_arguments": True,
        "enable_submission_delete": False,
        "enable_callbacks": False,
        "callbacks_max_tries": 0,
        "callbacks_timeout": 0.0,
        "enable_additional_files": False,
        "max_queue_size": 10_000,
        "cpu_time_limit": low.cpu_time_ms / 1000,
        "max_cpu_time_limit": high.cpu_time_ms / 1000,
        "cpu_extra_time": 1.0,
        "max_cpu_extra_time": 1.0,
        "wall_time_limit": low.wall_time_ms / 1000,
        "max_wall_time_limit": min(high.wall_time_ms, max_wait_ms) / 1000,
        "memory_limit": low.memory_mib * 1024,
        "max_memory_limit": high.memory_mib * 1024,
        "stack_limit": 64_000,
        "max_stack_limit": 64_000,
        "max_processes_and_or_threads": low.processes,
        "max_max_processes_and_or_threads": high.processes,
        "enable_per_process_and_thread_time_limit": False,
        "allow_enable_per_process_and_thread_time_limit": False,
        "enable_per_process_and_thread_memory_limit": False,
        "allow_enable_per_process_and_thread_memory_limit": False,
        "max_file_size": low.output_bytes // 1024,
        "max_max_file_size": high.output_bytes // 1024,
        "number_of_runs": 1,
        "max_number_of_runs": 1,
        "redirect_stderr_to_stdout": False,
        "max_extract_size": 0,
        "enable_batched_submissions": True,
        "max_submission_batch_size": MAX_BATCH_SIZE,
        "submission_cache_duration": 0.0,
        "use_docs_as_homepage": False,
        "allow_enable_network": bool(policy.allow_network),
        "enable_network": False,
    }
