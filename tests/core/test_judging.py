"""Judging (core/judging.py): the comparators, the verdict of a case, the summary and the state, pure."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.judging import (
    CheckerKind,
    Difference,
    RunFacts,
    Verdict,
    case_verdict,
    checker_program_verdict,
    close_enough,
    compare,
    judged_state,
    judging_problem,
    run_verdict,
    summarize,
)

OK = RunFacts("SUCCEEDED", exit_code=0)


# -- comparators ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "expected", "actual", "same"),
    [
        ("exact", b"1\n2\n", b"1\n2\n", True),
        ("exact", b"1\n2\n", b"1\n2", False),
        ("exact", b"1\n", b"1 \n", False),
        ("exact", b"1\n", b"1\r\n", False),
        ("trailing_whitespace", b"1\n2\n", b"1  \n2\t\n\n\n", True),
        ("trailing_whitespace", b"1\n2", b"1\r\n2\r\n", True),
        ("trailing_whitespace", b"1 2\n", b"1  2\n", False),  # inner blanks count
        ("trailing_whitespace", b"a\n", b" a\n", False),  # leading blanks count
        ("trailing_whitespace", b"", b"\n\n", True),
        ("tokens", b"1 2\n3\n", b"1\n2 3", True),
        ("tokens", b"1 2 3", b"1 2", False),
        ("tokens", b"1.0", b"1", False),
        ("float", b"0.3333333", b"0.33333334", True),
        ("float", b"1.0 x", b"1 x", True),
        ("float", b"1.0", b"1.1", False),
        ("float", b"1000000", b"1000000.5", True),  # relative: 5e-7
        ("float", b"x", b"y", False),
        ("float", b"nan inf", b"nan inf", True),
        ("float", b"inf", b"-inf", False),
        ("float", b"nan", b"1", False),
    ],
)  # fmt: skip
def test_comparators(kind: str, expected: bytes, actual: bytes, same: bool) -> None:
    assert (compare(kind, expected, actual) is None) is same


def test_the_first_differing_line_is_named() -> None:
    assert compare("trailing_whitespace", b"1\n2\n3\n", b"1\n20\n3\n") == Difference(2, "2", "20")
    assert compare("exact", b"a\nb\n", b"a\n") == Difference(2, "b", "")
    assert compare("trailing_whitespace", b"a\n", b"a\nb\n") == Difference(2, "", "b")
    found = compare("tokens", b"1 2\n3 4\n", b"1 2\n3 5\n")
    assert found is not None and (found.line, found.expected, found.actual, found.what) == (2, "4", "5", "token 4")
    short = compare("tokens", b"1 2\n", b"1\n")
    assert short is not None and short.actual == "(end of output)" and short.line == 2
    ends = compare("exact", b"1\n", b"1")
    assert ends is not None and ends.what == "line ends"
    assert Difference(2, "2", "20").message() == "line 2: expected '2', got '20'"


def test_a_long_line_is_quoted_short() -> None:
    found = compare("exact", b"a" * 1000, b"b" * 1000)
    assert found is not None and len(found.expected) < 300 and found.expected.endswith("…")


def test_tolerances() -> None:
    assert compare("float", b"1.0", b"1.05", abs_tolerance=0.1, rel_tolerance=0) is None
    assert compare("float", b"1.0", b"1.05", abs_tolerance=0.01, rel_tolerance=0) is not None
    assert compare("float", b"100", b"101", abs_tolerance=0, rel_tolerance=0.02) is None
    assert compare("float", b"100", b"103", abs_tolerance=0, rel_tolerance=0.02) is not None


def test_the_program_checker_is_no_comparison() -> None:
    with pytest.raises(ValueError, match="program"):
        compare("program", b"", b"")
    with pytest.raises(ValueError):
        compare("nope", b"", b"")


_LINES = st.lists(st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n")))


@given(_LINES, st.lists(st.sampled_from([" ", "\t", ""]), min_size=0, max_size=5))
def test_every_checker_accepts_the_expected_output_itself(lines: list[str], pad: list[str]) -> None:
    text = "\n".join(lines).encode()
    for kind in ("exact", "trailing_whitespace", "tokens", "float"):
        assert compare(kind, text, text) is None
    padded = "\n".join(line + "".join(pad) for line in lines).encode() + b"\n\n"
    assert compare("trailing_whitespace", text, padded) is None


@given(_LINES, _LINES)
def test_a_difference_is_found_exactly_when_the_normalized_lines_differ(a: list[str], b: list[str]) -> None:
    def normal(lines: list[str]) -> list[str]:
        out = [line.rstrip() for line in lines]
        while out and out[-1] == "":
            out.pop()
        return out

    found = compare("trailing_whitespace", "\n".join(a).encode(), "\n".join(b).encode())
    assert (found is None) == (normal(a) == normal(b))
    if found is not None:
        n = found.line - 1
        assert normal(a)[:n] == normal(b)[:n]


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12))
def test_a_float_is_close_to_itself_printed_with_fewer_digits(x: float) -> None:
    assert compare("float", repr(x).encode(), f"{x:.9g}".encode()) is None
    assert close_enough(x, x, 0, 0)
    assert not close_enough(math.nan, x, 1, 1)


# -- verdicts -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("run", "verdict"),
    [
        (RunFacts("LIMIT_EXCEEDED", "wall_time", None, 9), Verdict.TIME_LIMIT),
        (RunFacts("LIMIT_EXCEEDED", "cpu_time", None, 9), Verdict.TIME_LIMIT),
        (RunFacts("LIMIT_EXCEEDED", "memory", None, 9), Verdict.MEMORY_LIMIT),
        (RunFacts("LIMIT_EXCEEDED", "output", None, 9), Verdict.OUTPUT_LIMIT),
        (RunFacts("LIMIT_EXCEEDED", "processes", None, 9), Verdict.RUNTIME_ERROR),
        (RunFacts("LIMIT_EXCEEDED", "disk", 1, None), Verdict.RUNTIME_ERROR),
        (RunFacts("FAILED", None, 3, None), Verdict.RUNTIME_ERROR),
        (RunFacts("FAILED", None, None, 11), Verdict.RUNTIME_ERROR),
        (RunFacts("ERROR"), Verdict.INTERNAL_ERROR),
        (RunFacts("CANCELLED", None, None, 9), Verdict.SKIPPED),
        (RunFacts("COMPILE_ERROR", None, 1, None), Verdict.SKIPPED),
    ],
)
def test_a_run_that_did_not_succeed_decides_its_verdict(run: RunFacts, verdict: Verdict) -> None:
    decided = run_verdict(run)
    assert decided is not None and decided.verdict is verdict
    # Its output is never compared: printing the expected answer does not make it ACCEPTED.
    assert case_verdict(RunFacts(run.state, run.limit, run.exit_code, run.signal, b"42\n"), b"42\n").verdict is verdict


def test_runtime_error_says_its_exit_code_or_signal() -> None:
    assert case_verdict(RunFacts("FAILED", None, 3, None), b"").message == "exit code 3"
    assert case_verdict(RunFacts("FAILED", None, None, 11), b"").message == "signal 11"


def test_a_succeeded_run_is_compared() -> None:
    assert case_verdict(RunFacts("SUCCEEDED", None, 0, None, b"3\n"), b"3").verdict is Verdict.ACCEPTED
    wrong = case_verdict(RunFacts("SUCCEEDED", None, 0, None, b"4\n"), b"3")
    assert wrong.verdict is Verdict.WRONG_ANSWER and wrong.difference == Difference(1, "3", "4")
    assert wrong.message == "line 1: expected '3', got '4'"


@pytest.mark.parametrize(
    ("checker", "verdict"),
    [
        (RunFacts("SUCCEEDED", None, 0, None, b"ok\n"), Verdict.ACCEPTED),
        (RunFacts("FAILED", None, 1, None, b"off by one\n"), Verdict.WRONG_ANSWER),
        (RunFacts("FAILED", None, 2, None), Verdict.CHECKER_ERROR),
        (RunFacts("FAILED", None, None, 11), Verdict.CHECKER_ERROR),
        (RunFacts("LIMIT_EXCEEDED", "wall_time", None, 9), Verdict.CHECKER_ERROR),
        (RunFacts("COMPILE_ERROR", None, 1, None), Verdict.CHECKER_ERROR),
        (RunFacts("ERROR"), Verdict.INTERNAL_ERROR),
    ],
)
def test_the_checker_programs_exit_is_the_verdict(checker: RunFacts, verdict: Verdict) -> None:
    assert checker_program_verdict(checker).verdict is verdict


def test_the_checker_programs_first_line_is_the_message() -> None:
    assert checker_program_verdict(RunFacts("FAILED", None, 1, None, b"\nexpected 3\nmore")).message == "expected 3"


# -- summary and state -----------------------------------------------------------------------------
A, W, T, S = Verdict.ACCEPTED, Verdict.WRONG_ANSWER, Verdict.TIME_LIMIT, Verdict.SKIPPED


def test_summary() -> None:
    summary = summarize([A, W, A, T, S])
    assert (summary.passed, summary.total, summary.first_failure) == (2, 5, 1)
    assert summarize([A, A]).first_failure is None


@pytest.mark.parametrize(
    ("verdicts", "runs", "state"),
    [
        ([A, A], [OK, OK], "SUCCEEDED"),
        ([A, W], [OK, OK], "FAILED"),
        ([A, T, W], [OK, RunFacts("LIMIT_EXCEEDED", "wall_time", None, 9), OK], "LIMIT_EXCEEDED"),
        ([Verdict.RUNTIME_ERROR, A], [RunFacts("FAILED", None, 1, None), OK], "FAILED"),
        ([A, Verdict.INTERNAL_ERROR, W], [OK, RunFacts("ERROR"), OK], "ERROR"),
        ([S, S], [RunFacts("COMPILE_ERROR", None, 1, None), None], "COMPILE_ERROR"),
        ([A, S], [OK, RunFacts("CANCELLED", None, None, 9)], "CANCELLED"),
        ([W, S, S], [OK, None, None], "FAILED"),  # stop_on_first_failure
        ([A, Verdict.CHECKER_ERROR], [OK, OK], "FAILED"),
    ],
)
def test_the_judged_state(verdicts: list[Verdict], runs: list[RunFacts | None], state: str) -> None:
    assert judged_state(verdicts, runs) == state


@given(st.lists(st.sampled_from(list(Verdict)), min_size=1, max_size=20))
def test_succeeded_exactly_when_every_case_is_accepted(verdicts: list[Verdict]) -> None:
    runs = [OK if v is not Verdict.INTERNAL_ERROR else RunFacts("ERROR") for v in verdicts]
    state = judged_state(verdicts, runs)
    assert (state == "SUCCEEDED") == all(v is A for v in verdicts)
    assert state in ("SUCCEEDED", "FAILED", "ERROR")


# -- validation -------------------------------------------------------------------------------------
CASE: tuple[str, list[str], str] = ("1\n", [], "2\n")
LANGS = {"python", "c"}


@pytest.mark.parametrize(
    ("tests", "checker", "stdin", "args", "field"),
    [
        ([CASE], None, "", [], None),
        ([CASE], ("float", 1e-3, 0.0, None, None), "", [], None),
        ([CASE], ("program", 1e-6, 1e-6, "python", "import sys"), "", [], None),
        ([CASE] * 300, None, "", [], "tests"),
        ([CASE], None, "x", [], "stdin"),
        ([CASE], None, "", ["a"], "args"),
        ([], ("exact", 0.0, 0.0, None, None), "", [], "checker"),
        ([CASE], ("regex", 0.0, 0.0, None, None), "", [], "checker.kind"),
        ([CASE], ("float", -1.0, 0.0, None, None), "", [], "checker.abs_tolerance"),
        ([CASE], ("float", 0.0, math.nan, None, None), "", [], "checker.rel_tolerance"),
        ([CASE], ("program", 0.0, 0.0, "cobol", "x"), "", [], "checker.language"),
        ([CASE], ("program", 0.0, 0.0, "python", ""), "", [], "checker.code"),
        ([CASE], ("exact", 0.0, 0.0, None, "print(1)"), "", [], "checker.code"),
        ([CASE], ("tokens", 0.0, 0.0, "python", None), "", [], "checker.language"),
    ],
)  # fmt: skip
def test_judging_problem_names_the_field(
    tests: list[tuple[str, list[str], str]],
    checker: tuple[str, float, float, str | None, str | None] | None,
    stdin: str,
    args: list[str],
    field: str | None,
) -> None:
    problem = judging_problem(tests, checker, stdin=stdin, args=args, languages=LANGS)
    assert (problem[0] if problem is not None else None) == field


def test_every_checker_kind_has_a_wire_name() -> None:
    assert [k.value for k in CheckerKind] == ["exact", "trailing_whitespace", "tokens", "float", "program"]
