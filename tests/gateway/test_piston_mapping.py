"""Pure: Piston's request and answer mapped onto the native API (gateway/piston.py)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from gateway import piston
from gateway.errors import ApiError
from tests.gateway.test_judge0_mapping import execution

AVAILABLE = {"python": "3.11.2", "c": "12.2.0", "cpp": "12.2.0"}


@pytest.mark.parametrize(
    ("language", "version", "ours"),
    [("python", "*", "python"), ("py", "3.11", "python"), ("python3", "3.11.2", "python"), ("c++", "", "cpp"),
     ("gcc", "12.x", "c")],
)  # fmt: skip
def test_language_and_version_resolve(language: str, version: str, ours: str) -> None:
    assert piston.resolve(language, version, AVAILABLE) == ours


@pytest.mark.parametrize(
    ("language", "version", "field"), [("ruby", "*", "language"), ("go", "*", "language"), ("py", "2.7", "version")]
)
def test_unknown_runtimes_name_their_field(language: str, version: str, field: str) -> None:
    with pytest.raises(ApiError) as caught:
        piston.resolve(language, version, AVAILABLE)
    assert (caught.value.status, caught.value.field) == (422, field)


def body(**overrides: Any) -> piston.ExecuteBody:
    return msgspec.convert({"language": "py", "files": [{"content": "print(1)"}], **overrides}, piston.ExecuteBody)


def test_the_request_maps_files_args_and_limits() -> None:
    create = piston.to_create(
        body(
            files=[{"name": "main.py", "content": "import util"}, {"name": "util.py", "content": "x = 1"}],
            stdin="in", args=["1", "2"], run_timeout=3000, run_memory_limit=64 * 1024 * 1024,
            compile_timeout=10000, compile_memory_limit=-1,
        ),
        language="python",
    )  # fmt: skip
    assert (create.code, create.files, create.stdin, create.args) == (
        "import util",
        {"util.py": "x = 1"},
        "in",
        ["1", "2"],
    )
    assert create.limits is not None and (create.limits.wall_time_ms, create.limits.memory_mib) == (3000, 64)
    assert piston.to_create(body(run_memory_limit=-1), language="python").limits is None


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"compile_timeout": 5000}, "compile_timeout"),
        ({"compile_memory_limit": 1024}, "compile_memory_limit"),
        ({"compile_cpu_time": 100}, "compile_cpu_time"),
        ({"files": []}, "files"),
        ({"files": [{"content": "a"}, {"content": "b"}]}, "files[1].name"),
        ({"files": [{"content": "YQ==", "encoding": "base64"}]}, "files[0].encoding"),
        ({"run_timeout": 0}, "run_timeout"),
    ],
)
def test_what_we_cannot_honour_is_refused_naming_it(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ApiError) as caught:
        piston.to_create(body(**overrides), language="python")
    assert (caught.value.status, caught.value.field) == (422, field)


@pytest.mark.parametrize(
    ("state", "overrides", "code", "signal", "status"),
    [
        ("SUCCEEDED", {"exit_code": 0}, 0, None, None),
        ("FAILED", {"exit_code": 3}, 3, None, "RE"),
        ("FAILED", {"signal": 11}, None, "SIGSEGV", "SG"),
        ("LIMIT_EXCEEDED", {"limit": "wall_time"}, None, "SIGKILL", "TO"),
        ("LIMIT_EXCEEDED", {"limit": "output", "exit_code": 0}, 0, None, "OL"),
    ],
)
def test_the_run_stage(
    state: str, overrides: dict[str, Any], code: int | None, signal: str | None, status: str | None
) -> None:
    answer = piston.to_response(
        execution(state, language="python", stdout="o", stderr="e", **overrides), version="3.11.2", compiled=False
    )
    assert (answer["language"], answer["version"], "compile" in answer) == ("python", "3.11.2", False)
    run = answer["run"]
    assert (run["code"], run["signal"], run["status"], run["output"]) == (code, signal, status, "oe")


def test_a_compile_error_has_a_compile_stage_and_no_run() -> None:
    answer = piston.to_response(execution("COMPILE_ERROR", compile_output="x.c:1: error"), version="12", compiled=True)
    assert answer["compile"]["code"] == 1 and answer["compile"]["stderr"] == "x.c:1: error" and "run" not in answer
    ran = piston.to_response(execution("SUCCEEDED", exit_code=0), version="12", compiled=True)
    assert ran["compile"]["code"] == 0 and ran["run"]["code"] == 0


def test_runtimes_list() -> None:
    listed = piston.runtimes(AVAILABLE)
    assert {
        "language": "python",
        "version": "3.11.2",
        "aliases": ["py", "py3", "python3"],
        "runtime": "python",
    } in listed
