"""Pure: Judge0 status ids, language ids, field refusal and the request/answer mappings (gateway/judge0.py)."""

from __future__ import annotations

import base64
from typing import Any

import msgspec
import pytest

from gateway import judge0
from gateway.api_types import CaseOut, Execution, JudgementOut, Timings, Truncated, Usage
from gateway.errors import ApiError


def execution(state: str, **overrides: Any) -> Execution:
    values: dict[str, Any] = {
        "id": "0123456789abcdef0123456789abcdef",
        "language": "c",
        "state": state,
        "limit": None,
        "exit_code": None,
        "signal": None,
        "stdout": "",
        "stderr": "",
        "compile_output": "",
        "truncated": Truncated(),
        "timings": Timings(run_ms=12),
        "usage": Usage(cpu_time_ms=7, memory_peak_kib=2048),
        "attempts": 1,
        "created_at": "2026-12-07T20:00:00.000Z",
        "finished_at": "2026-12-07T20:00:01.000Z",
    }
    values.update(overrides)
    return msgspec.convert(values, Execution, from_attributes=True)


def case(verdict: str, *, signal: int | None = None, exit_code: int | None = 0) -> CaseOut:
    return CaseOut(
        index=0, verdict=verdict, state=None, limit=None, exit_code=exit_code, signal=signal, run_ms=3,
        cpu_time_ms=2, memory_peak_kib=100, stdout="out\n", stderr="", truncated=Truncated(), line=None,
        expected_line=None, actual_line=None, message=None,
    )  # fmt: skip


def judged(verdict: str, **kw: Any) -> Execution:
    cases = [case(verdict, **kw)]
    return execution(
        "SUCCEEDED" if verdict == "ACCEPTED" else "FAILED",
        judgement=JudgementOut(passed=0, total=1, first_failure=0, checker="trailing_whitespace", cases=cases),
    )


@pytest.mark.parametrize(
    ("state", "overrides", "status_id"),
    [
        ("REQUESTED", {}, 1),
        ("QUEUED", {}, 1),
        ("SCHEDULED", {}, 1),
        ("STARTED", {}, 2),
        ("SUCCEEDED", {"exit_code": 0}, 3),
        ("COMPILE_ERROR", {}, 6),
        ("LIMIT_EXCEEDED", {"limit": "wall_time"}, 5),
        ("LIMIT_EXCEEDED", {"limit": "cpu_time", "signal": 9}, 5),
        ("LIMIT_EXCEEDED", {"limit": "output"}, 8),
        ("LIMIT_EXCEEDED", {"limit": "memory", "signal": 9}, 12),
        ("FAILED", {"signal": 11}, 7),
        ("FAILED", {"signal": 25}, 8),
        ("FAILED", {"signal": 8}, 9),
        ("FAILED", {"signal": 6}, 10),
        ("FAILED", {"exit_code": 1}, 11),
        ("FAILED", {"signal": 15}, 12),
        ("ERROR", {}, 13),
        ("CANCELLED", {}, 13),
    ],
)
def test_status_of_a_native_execution(state: str, overrides: dict[str, Any], status_id: int) -> None:
    assert judge0.status_of(execution(state, **overrides)).id == status_id


@pytest.mark.parametrize(
    ("verdict", "kw", "status_id"),
    [
        ("ACCEPTED", {}, 3),
        ("WRONG_ANSWER", {}, 4),
        ("TIME_LIMIT", {}, 5),
        ("OUTPUT_LIMIT", {}, 8),
        ("RUNTIME_ERROR", {"exit_code": 2}, 11),
        ("RUNTIME_ERROR", {"signal": 11, "exit_code": None}, 7),
        ("MEMORY_LIMIT", {"signal": 9, "exit_code": None}, 12),
        ("CHECKER_ERROR", {}, 13),
        ("INTERNAL_ERROR", {}, 13),
    ],
)
def test_status_of_a_judged_execution(verdict: str, kw: dict[str, Any], status_id: int) -> None:
    assert judge0.status_of(judged(verdict, **kw)).id == status_id


def test_the_statuses_are_judge0s_fourteen_in_order() -> None:
    assert [s.id for s in judge0.STATUSES] == list(range(1, 15))
    assert judge0.STATUSES[10].description == "Runtime Error (NZEC)"


@pytest.mark.parametrize(
    ("language_id", "ours"),
    [(71, "python"), (92, "python"), (50, "c"), (54, "cpp"), (62, "java"), (63, "javascript"), (74, "typescript"),
     (73, "rust"), (60, "go"), (51, "csharp"), (46, "bash")],
)  # fmt: skip
def test_judge0_language_ids(language_id: int, ours: str) -> None:
    create = judge0.to_create(
        judge0.SubmissionBody(source_code="x", language_id=language_id), execution_id="e", base64_encoded=False
    )
    assert create.language == ours


def test_languages_list_only_what_is_available_with_our_version() -> None:
    listed = judge0.language_list({"python": "3.11.2", "c": "12.2.0"})
    assert {"id": 71, "name": "Python (3.11.2)"} in listed and {"id": 50, "name": "C (GCC 12.2.0)"} in listed
    assert all(entry["id"] in (48, 49, 50, 71, 92) for entry in listed)


@pytest.mark.parametrize(
    ("field", "refused", "default"),
    [
        ("compiler_options", "-O2", ""),
        ("cpu_extra_time", 2.5, 1.0),
        ("stack_limit", 128000, 64000),
        ("enable_per_process_and_thread_time_limit", True, False),
        ("enable_per_process_and_thread_memory_limit", True, False),
        ("redirect_stderr_to_stdout", True, False),
        ("number_of_runs", 3, 1),
        ("additional_files", "UEsDBA==", ""),
        ("callback_url", "https://example.com/hook", ""),
    ],
)
def test_an_unsupported_field_is_refused_unless_null_or_default(field: str, refused: object, default: object) -> None:
    def create(value: object) -> object:
        body = msgspec.convert({"source_code": "x", "language_id": 71, field: value}, judge0.SubmissionBody)
        return judge0.to_create(body, execution_id="e", base64_encoded=False)

    with pytest.raises(ApiError) as caught:
        create(refused)
    assert (caught.value.status, caught.value.field) == (422, field) and field in caught.value.message
    create(None)
    create(default)


def test_the_supported_fields_map_to_native_limits_args_and_one_case() -> None:
    body = judge0.SubmissionBody(
        source_code=base64.b64encode(b"print(input())").decode(),
        language_id=71,
        stdin=base64.b64encode(b"7").decode(),
        expected_output=base64.b64encode(b"7\n").decode(),
        command_line_arguments="a 'b c'",
        cpu_time_limit=1.5,
        wall_time_limit=3,
        memory_limit=128000,
        max_processes_and_or_threads=10,
        max_file_size=1024,
        enable_network=False,
    )
    create = judge0.to_create(body, execution_id="e", base64_encoded=True)
    assert (create.code, create.stdin, create.args, create.id) == ("print(input())", "", [], "e")
    assert create.limits is not None
    limits = create.limits
    assert (limits.cpu_time_ms, limits.wall_time_ms, limits.memory_mib, limits.processes, limits.output_bytes) == (
        1500, 3000, 125, 10, 1024 * 1024,
    )  # fmt: skip
    assert [(c.stdin, c.args, c.expected_stdout) for c in create.tests] == [("7", ["a", "b c"], "7\n")]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"language_id": 71}, "source_code"),
        ({"source_code": "x"}, "language_id"),
        ({"source_code": "x", "language_id": 1}, "language_id"),
        ({"source_code": "x", "language_id": 71, "cpu_time_limit": -1}, "cpu_time_limit"),
        ({"source_code": "x", "language_id": 71, "command_line_arguments": "'open"}, "command_line_arguments"),
    ],
)
def test_bad_submissions_name_their_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ApiError) as caught:
        judge0.to_create(msgspec.convert(body, judge0.SubmissionBody), execution_id="e", base64_encoded=False)
    assert (caught.value.status, caught.value.field) == (422, field)


def test_bad_base64_names_its_field() -> None:
    with pytest.raises(ApiError) as caught:
        judge0.to_create(
            judge0.SubmissionBody(source_code="eA==", language_id=71, stdin="%%%"),
            execution_id="e",
            base64_encoded=True,
        )
    assert caught.value.field == "stdin"


def test_a_submission_answer_in_judge0s_shape() -> None:
    done = judged("WRONG_ANSWER")
    answer = judge0.to_submission(
        done, fields=judge0.ALL_FIELDS, base64_encoded=True, language_ids=judge0.default_language_ids()
    )
    assert answer["token"] == "01234567-89ab-cdef-0123-456789abcdef"
    assert answer["status"] == {"id": 4, "description": "Wrong Answer"}
    assert base64.b64decode(answer["stdout"]) == b"out\n" and answer["stderr"] is None
    assert (answer["time"], answer["wall_time"], answer["memory"]) == ("0.002", "0.003", 100)
    assert judge0.execution_id_of(answer["token"]) == done.id
    running = judge0.to_submission(
        execution("STARTED"), fields=judge0.DEFAULT_FIELDS, base64_encoded=False, language_ids={}
    )
    assert (running["status"]["id"], running["time"], set(running)) == (2, None, set(judge0.DEFAULT_FIELDS))


@pytest.mark.parametrize(
    ("raw", "fields"),
    [(None, judge0.DEFAULT_FIELDS), ("*", judge0.ALL_FIELDS), ("status, stdout", ("status", "stdout"))],
)
def test_fields_parameter(raw: str | None, fields: tuple[str, ...]) -> None:
    assert judge0.parse_fields(raw) == fields


def test_an_unknown_fields_entry_is_refused() -> None:
    with pytest.raises(ApiError) as caught:
        judge0.parse_fields("status,source_code")
    assert caught.value.field == "fields" and "source_code" in caught.value.message
