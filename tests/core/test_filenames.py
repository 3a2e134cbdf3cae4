"""The one file-name policy (core/filenames.py): pure, checked exhaustively on its rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.filenames import (
    MAX_DEPTH,
    MAX_NAME_BYTES,
    NAME_MAX_BYTES,
    Reserved,
    argv_path,
    files_problem,
    name_problem,
)

C = Reserved("main.c", "out")


@pytest.mark.parametrize(
    "name",
    ["data.txt", "a/b.txt", "a%2Fb.txt", "-rf.py", "@opts.c", "é" * 127, "日本/語.txt", "a b", ".hidden", "x..y"],
)
def test_good_names(name: str) -> None:
    assert name_problem(name) is None


@pytest.mark.parametrize(
    "name",
    [
        "", ".", "..", "./a", "a/./b", "a/../b", "../x", "..hidden", "a//b", "a/", "/etc/passwd",
        "a\x00b", "a\nb", "a\tb", "\x7f", "a\x85b", "a\\b", "\ud800",
        "é" * 128,  # 256 bytes of UTF-8 in 128 characters
        "a" * 256,
        "/".join(["d"] * (MAX_DEPTH + 1)) + "/f",
    ],
)  # fmt: skip
def test_bad_names(name: str) -> None:
    assert name_problem(name) is not None


def test_segments_count_bytes_not_characters() -> None:
    assert name_problem("€" * (NAME_MAX_BYTES // 3)) is None  # 85 x 3 bytes = 255
    assert name_problem("€" * (NAME_MAX_BYTES // 3 + 1)) is not None
    long_path = "/".join(["é" * 127] * MAX_DEPTH) + "/" + "é" * 127  # 9 x 254 bytes + 8 slashes
    assert len(long_path.encode()) < MAX_NAME_BYTES and name_problem(long_path) is None


def test_files_used_as_directories_and_adapter_names_are_refused() -> None:
    assert files_problem(["a", "a/b"]) is not None
    assert files_problem(["a/b/c", "a/b"]) is not None
    assert files_problem(["a/b", "a/c", "ab"]) is None
    problem = files_problem(["ok.txt", "main.c"], C)
    assert problem is not None and (problem.index, problem.name) == (1, "main.c")
    assert files_problem(["main.c/x"], C) is not None
    assert files_problem(["out"], C) is not None and files_problem(["out/main"], C) is not None
    assert files_problem(["output/main", "outx"], C) is None
    assert files_problem(["out/x"], Reserved("main.py", ".")) is None  # an interpreter writes no output dir


@given(st.text(min_size=1, max_size=40))
def test_argv_path_never_starts_an_option_or_response_file(name: str) -> None:
    arg = argv_path(name)
    assert not arg.startswith(("-", "@", "+", "/"))
    assert arg in (name, "./" + name)


@given(st.lists(st.text(max_size=12), max_size=6))
def test_files_problem_is_total_and_names_one_given_name(names: list[str]) -> None:
    problem = files_problem(names, C)
    if problem is not None:
        assert names[problem.index] == problem.name and problem.message
    else:
        assert all(name_problem(n) is None for n in names)
