"""Pure: judging a program's output against test cases (issue 23).

The comparators (`compare`), the verdict of one case from what its run did (`case_verdict`),
the summary of a judged execution (`summarize`) and its state (`judged_state`), and the
validation of the `tests` and `checker` of a request (`judging_problem`). No I/O: the executor
(processors/judging.py) runs the cases and calls these; the gateway's compatibility APIs call
them too, so every layer judges alike.

Run states and limits arrive as their wire strings ("SUCCEEDED", "wall_time", ...), so this
module needs nothing beyond the standard library.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass


class Verdict(enum.StrEnum):
    """The verdict of one test case."""

    ACCEPTED = "ACCEPTED"
    WRONG_ANSWER = "WRONG_ANSWER"
    TIME_LIMIT = "TIME_LIMIT"  # wall_time or cpu_time
    MEMORY_LIMIT = "MEMORY_LIMIT"
    OUTPUT_LIMIT = "OUTPUT_LIMIT"
    RUNTIME_ERROR = "RUNTIME_ERROR"  # a non-zero exit, a signal, or the processes or disk limit
    CHECKER_ERROR = "CHECKER_ERROR"  # the checker program neither accepted nor refused
    INTERNAL_ERROR = "INTERNAL_ERROR"  # the platform failed to run the case (the run was ERROR)
    SKIPPED = "SKIPPED"  # not run: stop_on_first_failure, a compile error, or a cancellation


class CheckerKind(enum.StrEnum):
    EXACT = "exact"  # byte for byte
    TRAILING_WHITESPACE = "trailing_whitespace"  # lines compared without trailing blanks; trailing empty lines ignored
    TOKENS = "tokens"  # whitespace-separated tokens compared one by one
    FLOAT = "float"  # tokens; numbers within abs_tolerance or rel_tolerance of each other
    PROGRAM = "program"  # a checker program: exit 0 accepts, exit 1 refuses (WRONG_ANSWER)


DEFAULT_CHECKER = CheckerKind.TRAILING_WHITESPACE
DEFAULT_ABS_TOLERANCE = 1e-6
DEFAULT_REL_TOLERANCE = 1e-6
# How much of each case's stdout and stderr the judgement keeps (the first failing case's full
# output is the execution's own stdout/stderr).
CASE_OUTPUT_BYTES = 4096
# How much of a differing line a Difference quotes.
QUOTE_CHARS = 200
# Checker programs get the case's files under these names (and their paths as arguments, in order).
CHECKER_FILES: tuple[str, str, str] = ("input.txt", "expected.txt", "actual.txt")
MAX_TESTS = 256

_PASSING = frozenset({Verdict.ACCEPTED})
_RUN_LIMITS = {
    "wall_time": Verdict.TIME_LIMIT,
    "cpu_time": Verdict.TIME_LIMIT,
    "memory": Verdict.MEMORY_LIMIT,
    "output": Verdict.OUTPUT_LIMIT,
}


@dataclass(frozen=True, slots=True)
class Difference:
    """Where the output first differs from the expected output (lines count from 1)."""

    line: int
    expected: str  # that line of the expected output ("" past its end)
    actual: str  # that line of the actual output ("" past its end)
    what: str = "line"  # "line", or "token <n>" for the token-wise checkers

    def message(self) -> str:
        return f"line {self.line}: expected {self.expected!r}, got {self.actual!r}" + (
            f" ({self.what})" if self.what != "line" else ""
        )


@dataclass(frozen=True, slots=True)
class RunFacts:
    """What one run of a case did, as the runtime reported it."""

    state: str  # SUCCEEDED FAILED LIMIT_EXCEEDED CANCELLED ERROR (COMPILE_ERROR on a first run)
    limit: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    stdout: bytes = b""


@dataclass(frozen=True, slots=True)
class CaseJudged:
    verdict: Verdict
    difference: Difference | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class Summary:
    passed: int
    total: int
    first_failure: int | None  # the index of the first case that is neither ACCEPTED nor SKIPPED


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _quote(line: str) -> str:
    return line if len(line) <= QUOTE_CHARS else line[:QUOTE_CHARS] + "…"


def _lines(text: str) -> list[str]:
    """Lines without their ends ("\\r\\n" or "\\n"); a final newline does not start a line."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _first_line_difference(expected: list[str], actual: list[str]) -> Difference | None:
    for i in range(max(len(expected), len(actual))):
        e = expected[i] if i < len(expected) else None
        a = actual[i] if i < len(actual) else None
        if e != a:
            return Difference(i + 1, _quote(e or ""), _quote(a or ""))
    return None


def _exact(expected: bytes, actual: bytes) -> Difference | None:
    if expected == actual:
        return None
    found = _first_line_difference(_lines(_text(expected)), _lines(_text(actual)))
    if found is not None:
        return found
    # Same lines, different bytes: only the line ends or the final newline differ.
    where = len(_lines(_text(expected))) or 1
    return Difference(where, "(ends with a newline)" if expected.endswith(b"\n") else "(no final newline)",
                      "(ends with a newline)" if actual.endswith(b"\n") else "(no final newline)",
                      "line ends")  # fmt: skip


def _trailing_whitespace(expected: bytes, actual: bytes) -> Difference | None:
    def normal(data: bytes) -> list[str]:
        lines = [line.rstrip() for line in _lines(_text(data))]
        while lines and lines[-1] == "":
            lines.pop()
        return lines

    return _first_line_difference(normal(expected), normal(actual))


def _tokens_with_lines(data: bytes) -> list[tuple[str, int]]:
    return [(token, n) for n, line in enumerate(_lines(_text(data)), 1) for token in line.split()]


def _number(token: str) -> float | None:
    try:
        return float(token)
    except ValueError:
        return None


def close_enough(expected: float, actual: float, abs_tolerance: float, rel_tolerance: float) -> bool:
    """Within either tolerance; NaN matches only NaN, an infinity only the same infinity."""
    if math.isnan(expected) or math.isnan(actual):
        return math.isnan(expected) and math.isnan(actual)
    if math.isinf(expected) or math.isinf(actual):
        return expected == actual
    error = abs(expected - actual)
    return error <= abs_tolerance or error <= rel_tolerance * abs(expected)


def _token_wise(expected: bytes, actual: bytes, floats: bool, abs_tol: float, rel_tol: float) -> Difference | None:
    want, got = _tokens_with_lines(expected), _tokens_with_lines(actual)
    for i in range(max(len(want), len(got))):
        w = want[i] if i < len(want) else None
        g = got[i] if i < len(got) else None
        if w is not None and g is not None:
            if w[0] == g[0]:
                continue
            if floats:
                a, b = _number(w[0]), _number(g[0])
                if a is not None and b is not None and close_enough(a, b, abs_tol, rel_tol):
                    continue
        line = g[1] if g is not None else (got[-1][1] + 1 if got else 1)
        return Difference(line, _quote(w[0] if w else "(end of output)"), _quote(g[0] if g else "(end of output)"),
                          f"token {i + 1}")  # fmt: skip
    return None


def compare(
    kind: CheckerKind | str,
    expected: bytes,
    actual: bytes,
    abs_tolerance: float = DEFAULT_ABS_TOLERANCE,
    rel_tolerance: float = DEFAULT_REL_TOLERANCE,
) -> Difference | None:
    """None if `actual` matches `expected` under the checker, else where it first differs."""
    kind = CheckerKind(kind)
    if kind is CheckerKind.EXACT:
        return _exact(expected, actual)
    if kind is CheckerKind.TRAILING_WHITESPACE:
        return _trailing_whitespace(expected, actual)
    if kind is CheckerKind.TOKENS:
        return _token_wise(expected, actual, False, 0.0, 0.0)
    if kind is CheckerKind.FLOAT:
        return _token_wise(expected, actual, True, abs_tolerance, rel_tolerance)
    raise ValueError("the program checker is a run, not a comparison: use checker_program_verdict")


def run_verdict(run: RunFacts) -> CaseJudged | None:
    """The verdict a case's run decides by itself, or None when it succeeded (its output is compared)."""
    if run.state == "SUCCEEDED":
        return None
    if run.state == "LIMIT_EXCEEDED":
        verdict = _RUN_LIMITS.get(run.limit or "")
        if verdict is not None:
            return CaseJudged(verdict, message=f"the {run.limit} limit")
        return CaseJudged(Verdict.RUNTIME_ERROR, message=f"the {run.limit} limit")
    if run.state == "FAILED":
        how = f"signal {run.signal}" if run.signal is not None else f"exit code {run.exit_code}"
        return CaseJudged(Verdict.RUNTIME_ERROR, message=how)
    if run.state in ("CANCELLED", "COMPILE_ERROR"):
        return CaseJudged(Verdict.SKIPPED, message=run.state.lower().replace("_", " "))
    return CaseJudged(Verdict.INTERNAL_ERROR, message="the platform could not run the case")


def case_verdict(
    run: RunFacts,
    expected_stdout: bytes,
    kind: CheckerKind | str = DEFAULT_CHECKER,
    abs_tolerance: float = DEFAULT_ABS_TOLERANCE,
    rel_tolerance: float = DEFAULT_REL_TOLERANCE,
) -> CaseJudged:
    """The verdict of a case judged by a comparison (every checker but `program`)."""
    decided = run_verdict(run)
    if decided is not None:
        return decided
    difference = compare(kind, expected_stdout, run.stdout, abs_tolerance, rel_tolerance)
    if difference is None:
        return CaseJudged(Verdict.ACCEPTED)
    return CaseJudged(Verdict.WRONG_ANSWER, difference, difference.message())


def checker_program_verdict(checker: RunFacts) -> CaseJudged:
    """The verdict a checker program gave a case whose run succeeded: exit 0 accepts, exit 1 refuses;
    anything else (another exit code, a signal, a limit, a compile error) is CHECKER_ERROR. Its
    output (the first line of stdout, else of stderr) is the message."""
    said = next((line for line in _lines(_text(checker.stdout)) if line.strip()), None)
    if checker.state == "SUCCEEDED":
        return CaseJudged(Verdict.ACCEPTED, message=said)
    if checker.state == "FAILED" and checker.exit_code == 1 and checker.signal is None:
        return CaseJudged(Verdict.WRONG_ANSWER, message=_quote(said) if said else "the checker refused the output")
    if checker.state == "ERROR":
        return CaseJudged(Verdict.INTERNAL_ERROR, message="the platform could not run the checker")
    how = checker.limit or (f"signal {checker.signal}" if checker.signal is not None else f"exit {checker.exit_code}")
    return CaseJudged(Verdict.CHECKER_ERROR, message=f"the checker ended {checker.state} ({how})")


def failed(verdict: Verdict) -> bool:
    return verdict not in _PASSING and verdict is not Verdict.SKIPPED


def summarize(verdicts: Sequence[Verdict]) -> Summary:
    passed = sum(1 for v in verdicts if v in _PASSING)
    first = next((i for i, v in enumerate(verdicts) if failed(v)), None)
    return Summary(passed, len(verdicts), first)


def judged_state(verdicts: Sequence[Verdict], runs: Sequence[RunFacts | None]) -> str:
    """The execution's state once its cases are judged, from each case's verdict and run (None: not run):

    - ERROR if any case is INTERNAL_ERROR (the platform failed; the judgement is incomplete);
    - COMPILE_ERROR if the first run did not compile (every case is then SKIPPED);
    - CANCELLED if a case's run was cancelled (the execution was);
    - SUCCEEDED if every case is ACCEPTED;
    - else the first failing case decides: its run's own state when the run did not succeed
      (FAILED with its exit code or signal, LIMIT_EXCEEDED with its limit), FAILED when it ran
      and its output was refused (WRONG_ANSWER, CHECKER_ERROR).
    """
    if any(v is Verdict.INTERNAL_ERROR for v in verdicts):
        return "ERROR"
    states = {r.state for r in runs if r is not None}
    if "COMPILE_ERROR" in states:
        return "COMPILE_ERROR"
    if "CANCELLED" in states:
        return "CANCELLED"
    if verdicts and all(v is Verdict.ACCEPTED for v in verdicts):
        return "SUCCEEDED"
    first = summarize(verdicts).first_failure
    run = runs[first] if first is not None else None
    if run is not None and run.state in ("FAILED", "LIMIT_EXCEEDED"):
        return run.state
    return "FAILED"


def judging_problem(
    tests: Sequence[tuple[str, Sequence[str], str]],
    checker: tuple[str, float, float, str | None, str | None] | None,
    *,
    stdin: str,
    args: Sequence[str],
    languages: Collection[str],
    max_tests: int = MAX_TESTS,
) -> tuple[str, str] | None:
    """Why the `tests` ((stdin, args, expected_stdout) each) and the `checker` ((kind, abs_tolerance,
    rel_tolerance, language, code), or None) of a request are refused, as (field, message), or None.
    Sizes and limits are the caller's policy to check."""
    if len(tests) > max_tests:
        return "tests", f"{len(tests)} tests, above the maximum {max_tests}"
    if tests and stdin:
        return "stdin", "with tests, each case has its own stdin (tests[i].stdin); the request's stdin must be empty"
    if tests and args:
        return "args", "with tests, each case has its own args (tests[i].args); the request's args must be empty"
    if checker is None:
        return None
    kind, abs_tolerance, rel_tolerance, language, code = checker
    if not tests:
        return "checker", "a checker needs tests"
    try:
        known = CheckerKind(kind)
    except ValueError:
        names = ", ".join(k.value for k in CheckerKind)
        return "checker.kind", f"unknown checker {kind!r}; known: {names}"
    for name, value in (("checker.abs_tolerance", abs_tolerance), ("checker.rel_tolerance", rel_tolerance)):
        if not math.isfinite(value) or value < 0:
            return name, f"{name} must be a finite number >= 0"
    if known is CheckerKind.PROGRAM:
        if language is None or language not in languages:
            return "checker.language", f"the program checker needs a known language, got {language!r}"
        if not code:
            return "checker.code", "the program checker needs its code"
    elif language is not None or code is not None:
        field = "checker.language" if language is not None else "checker.code"
        return field, f"{field} is for the program checker only (kind is {kind!r})"
    return None
