"""Judging a request that carries `tests`: one run per case on the runtime backend, each judged by
the pure core (core/judging.py), then one terminal outcome with every case's verdict.

The first case runs alone: it compiles the program (a compiled language), so a compile error ends
the execution at once and the other cases find the artifacts in the compile cache. The rest run
side by side, at most `concurrency` at a time, each in a fresh sandbox of its own (the warm pool
serves them as single runs: same language, same limits); `stop_on_first_failure` runs them one
after another and skips those after the first failure. A `program` checker runs sandboxed after
each case whose run succeeded.

Each case runs under an id of its own, `<execution id>~<index>` (`~` is in no execution id), so a
backend sees N ordinary runs; `cancel` kills whichever are running.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace

import structlog

from core.judging import (
    CASE_OUTPUT_BYTES,
    CHECKER_FILES,
    DEFAULT_CHECKER,
    CaseJudged,
    CheckerKind,
    RunFacts,
    Verdict,
    case_verdict,
    checker_program_verdict,
    failed,
    judged_state,
    run_verdict,
    summarize,
)
from runtime.types import Backend, Limits, Outcome, RunRequest
from streams.records import CaseVerdict, Checker, ExecutionRequest, Judgement, RunOutcome
from streams.states import State

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class Judged:
    """A judged execution's end: its terminal state, outcome (with the judgement) and reason."""

    state: State
    outcome: RunOutcome
    reason: str | None


def case_id(execution_id: str, index: int, checker: bool = False) -> str:
    return f"{execution_id}~{index}" + ("~checker" if checker else "")


def _facts(outcome: Outcome) -> RunFacts:
    limit = outcome.limit.value if outcome.limit is not None else None
    return RunFacts(outcome.state.value, limit, outcome.exit_code, outcome.signal, outcome.stdout)


def _head(data: bytes) -> tuple[bytes, bool]:
    return data[:CASE_OUTPUT_BYTES], len(data) > CASE_OUTPUT_BYTES


class Judge:
    """Runs and judges the cases of one request on `backend`."""

    def __init__(
        self,
        backend: Backend,
        request: ExecutionRequest,
        base: RunRequest,
        *,
        concurrency: int,
        on_case: Callable[[CaseVerdict], None] | None = None,
    ) -> None:
        self.backend = backend
        self.request = request
        self.base = base  # the request as one run: its language, code, files and resolved limits
        self.concurrency = max(1, concurrency)
        self.on_case = on_case
        self.checker = request.checker or Checker(kind=DEFAULT_CHECKER.value)
        self.cancelled = False
        self._running: set[str] = set()
        n = len(request.tests)
        self._outcomes: list[Outcome | None] = [None] * n
        self._verdicts: list[CaseVerdict | None] = [None] * n

    async def cancel(self) -> bool:
        """Stop judging: kill the case (and checker) runs under way, run no more."""
        self.cancelled = True
        killed = [await self.backend.cancel(run_id) for run_id in list(self._running)]
        return any(killed)

    async def run(self) -> Judged:
        n = len(self.request.tests)
        await self._case(0)
        first = self._outcomes[0]
        assert first is not None
        if first.state is not State.COMPILE_ERROR and n > 1:
            if self.request.stop_on_first_failure:
                for i in range(1, n):
                    if self.cancelled or self._failed_before(i):
                        break
                    await self._case(i)
            else:
                gate = asyncio.Semaphore(self.concurrency)

                async def gated(i: int) -> None:
                    async with gate:
                        if not self.cancelled:
                            await self._case(i)

                await asyncio.gather(*(gated(i) for i in range(1, n)))
        return self._end()

    def _failed_before(self, i: int) -> bool:
        return any(v is not None and failed(Verdict(v.verdict)) for v in self._verdicts[:i])

    async def _run(self, request: RunRequest) -> Outcome:
        self._running.add(request.execution_id)
        try:
            return await self.backend.run(request)
        finally:
            self._running.discard(request.execution_id)

    async def _case(self, i: int) -> None:
        case = self.request.tests[i]
        limits = replace(
            self.base.limits,
            wall_time_ms=case.wall_time_ms or self.base.limits.wall_time_ms,
            cpu_time_ms=case.cpu_time_ms or self.base.limits.cpu_time_ms,
        )
        run = replace(
            self.base,
            execution_id=case_id(self.request.id, i),
            stdin=case.stdin.encode(),
            args=tuple(case.args),
            limits=limits,
        )
        outcome = await self._run(run)
        self._outcomes[i] = outcome
        facts = _facts(outcome)
        expected = case.expected_stdout.encode()
        if self.checker.kind == CheckerKind.PROGRAM.value:
            judged = run_verdict(facts) or await self._check(i, outcome)
        else:
            judged = case_verdict(facts, expected, self.checker.kind, self.checker.abs_tolerance,
                                  self.checker.rel_tolerance)  # fmt: skip
        verdict = self._verdict(i, outcome, judged)
        self._verdicts[i] = verdict
        log.info("case_judged", id=self.request.id, case=i, verdict=verdict.verdict, state=outcome.state.value)
        if self.on_case is not None:
            self.on_case(verdict)

    async def _check(self, i: int, outcome: Outcome) -> CaseJudged:
        """Run the checker program on case `i`'s input, expected output and actual output."""
        case = self.request.tests[i]
        assert self.checker.language is not None and self.checker.code is not None
        contents = (case.stdin, case.expected_stdout, outcome.stdout.decode("utf-8", errors="replace"))
        checker_run = RunRequest(
            execution_id=case_id(self.request.id, i, checker=True),
            language=self.checker.language,
            code=self.checker.code,
            files=dict(zip(CHECKER_FILES, contents, strict=True)),
            args=CHECKER_FILES,
            limits=Limits(),
        )
        return checker_program_verdict(_facts(await self._run(checker_run)))

    @staticmethod
    def _verdict(i: int, outcome: Outcome, judged: CaseJudged) -> CaseVerdict:
        stdout, cut_stdout = _head(outcome.stdout)
        stderr, cut_stderr = _head(outcome.stderr)
        diff = judged.difference
        return CaseVerdict(
            index=i,
            verdict=judged.verdict.value,
            state=outcome.state.value,
            limit=outcome.limit.value if outcome.limit is not None else None,
            exit_code=outcome.exit_code,
            signal=outcome.signal,
            run_ms=outcome.run_ms,
            cpu_time_ms=outcome.cpu_time_ms,
            memory_peak_kib=outcome.memory_peak_kib,
            stdout=stdout,
            stderr=stderr,
            truncated_stdout=cut_stdout or outcome.truncated_stdout,
            truncated_stderr=cut_stderr or outcome.truncated_stderr,
            line=diff.line if diff is not None else None,
            expected_line=diff.expected if diff is not None else None,
            actual_line=diff.actual if diff is not None else None,
            message=judged.message if judged.verdict is not Verdict.ACCEPTED else None,
        )

    def _end(self) -> Judged:
        cases = [
            v if v is not None else CaseVerdict(index=i, verdict=Verdict.SKIPPED.value)
            for i, v in enumerate(self._verdicts)
        ]
        verdicts = [Verdict(c.verdict) for c in cases]
        runs = [_facts(o) if o is not None else None for o in self._outcomes]
        summary = summarize(verdicts)
        state = State(judged_state(verdicts, runs))
        ran = [o for o in self._outcomes if o is not None]
        # The execution's own output is that of the first failing case, else of the last case run.
        shown_at = (
            summary.first_failure
            if summary.first_failure is not None
            else max(i for i, o in enumerate(self._outcomes) if o is not None)
        )
        shown = self._outcomes[shown_at]
        assert shown is not None and ran
        first = self._outcomes[0]
        assert first is not None
        judgement = Judgement(
            passed=summary.passed,
            total=summary.total,
            first_failure=summary.first_failure,
            checker=self.checker.kind,
            cases=cases,
        )
        outcome = RunOutcome(
            limit=shown.limit.value if shown.limit is not None and state is State.LIMIT_EXCEEDED else None,
            exit_code=shown.exit_code,
            signal=shown.signal,
            stdout=shown.stdout,
            stderr=shown.stderr,
            compile_output=first.compile_output,
            truncated_stdout=shown.truncated_stdout,
            truncated_stderr=shown.truncated_stderr,
            cpu_time_ms=sum(o.cpu_time_ms for o in ran),
            memory_peak_kib=max(o.memory_peak_kib for o in ran),
            compile_ms=first.compile_ms,
            run_ms=sum(o.run_ms for o in ran),
            judgement=judgement,
        )
        return Judged(state, outcome, self._reason(state, cases, summary.first_failure))

    def _reason(self, state: State, cases: list[CaseVerdict], first_failure: int | None) -> str | None:
        if state is State.SUCCEEDED or state is State.COMPILE_ERROR:
            return None
        if state is State.CANCELLED:
            return "cancelled while judging"
        if state is State.ERROR:
            broken = next(i for i, c in enumerate(cases) if c.verdict == Verdict.INTERNAL_ERROR.value)
            outcome = self._outcomes[broken]
            why = outcome.error if outcome is not None and outcome.error else cases[broken].message
            return f"INTERNAL_ERROR on case {broken}: {why}"
        if first_failure is None:
            return None
        case = cases[first_failure]
        return f"{case.verdict} on case {first_failure}" + (f": {case.message}" if case.message else "")
