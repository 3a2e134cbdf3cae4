"""Build the ExecutionResult from the terminal transition: pure."""

from __future__ import annotations

from processors.provenance import result_provenance
from streams.records import ExecutionEvent, ExecutionRequest, ExecutionResult, RunOutcome


def build_result(terminal: ExecutionEvent, request: ExecutionRequest | None) -> ExecutionResult:
    """The final execution. `terminal` carries the outcome; `request` what was asked (None if unreadable)."""
    if not terminal.state.terminal:
        raise ValueError(f"{terminal.execution_id}: {terminal.state} is not a terminal state")
    outcome = terminal.outcome or RunOutcome()
    created = request.created_at_ms if request is not None and request.created_at_ms else terminal.at_ms
    started = terminal.started_at_ms
    finished = terminal.at_ms
    queued_ms = max(0, (started if started is not None else finished) - created)
    return ExecutionResult(
        id=terminal.execution_id,
        language=request.language if request is not None else "",
        tenant=terminal.tenant,
        state=terminal.state,
        limit=outcome.limit,
        exit_code=outcome.exit_code,
        signal=outcome.signal,
        stdout=outcome.stdout,
        stderr=outcome.stderr,
        compile_output=outcome.compile_output,
        truncated_stdout=outcome.truncated_stdout,
        truncated_stderr=outcome.truncated_stderr,
        queued_ms=queued_ms,
        compile_ms=outcome.compile_ms,
        run_ms=outcome.run_ms,
        total_ms=max(0, finished - created),
        cpu_time_ms=outcome.cpu_time_ms,
        memory_peak_kib=outcome.memory_peak_kib,
        attempts=terminal.attempt,
        created_at_ms=created,
        finished_at_ms=finished,
        reason=terminal.reason,
        field=terminal.field,
        callback_url=request.callback_url if request is not None else None,
        judgement=outcome.judgement,
        batch_id=request.batch_id if request is not None else None,
        rejudge_of=request.rejudge_of if request is not None else None,
        provenance=result_provenance(terminal, request),
    )
