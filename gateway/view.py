"""The gateway's materialized view of sandbox.events and sandbox.results: pure folding, no I/O.

Events are folded with the state machine's `apply`, so a duplicate or replayed event changes
nothing, and an event that arrives ahead of a gap waits until the gap is filled. A result is
the final word on an execution; before it exists, the execution object is built from events.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec

from gateway.api_types import CaseOut, Event, Execution, JudgementOut, ProvenanceOut, Timings, Truncated, Usage
from gateway.batch_index import BatchIndex
from processors.window import IdWindow
from streams.codec import CodecError
from streams.records import ExecutionEvent, ExecutionResult, Judgement, RunOutcome
from streams.states import ExecutionState, Limit, State, Transition, TransitionError, apply

_LIMITS = {limit.value: limit for limit in Limit}
_STATES = {state.value: state for state in State}
# How many events of one execution may wait for a gap to fill before the view drops the oldest.
MAX_PENDING_EVENTS = 64


@dataclass(frozen=True, slots=True)
class Retention:
    """How much of what is finished the view keeps; the oldest finished executions go first.

    Every finished execution holds its output (up to the policy's output limit per stream), so
    without a bound a tenant printing the maximum could grow the gateway without limit. What is
    dropped stays on sandbox.results (and was delivered to its waiters and webhook).
    """

    max_age_ms: int = 24 * 3600 * 1000  # after its finish
    max_executions: int = 50_000  # finished ones
    max_output_bytes: int = 64 * 1024 * 1024  # stdout + stderr + compile output of the finished ones


def iso_utc(at_ms: int | None) -> str | None:
    if at_ms is None or at_ms <= 0:
        return None
    stamp = dt.datetime.fromtimestamp(at_ms / 1000, tz=dt.UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


@dataclass(slots=True)
class ExecutionRecord:
    """Everything the view knows about one execution."""

    id: str
    tenant: str = "default"
    language: str = ""
    callback_url: str | None = None
    created_at_ms: int | None = None
    machine: ExecutionState | None = None
    events: list[ExecutionEvent] = field(default_factory=list)
    pending: dict[int, ExecutionEvent] = field(default_factory=dict)
    result: ExecutionResult | None = None
    submitted_here: bool = False
    trace_id: str | None = None
    batch_id: str | None = None
    rejudge_of: str | None = None

    @property
    def state(self) -> State:
        if self.result is not None:
            return self.result.state
        return self.machine.state if self.machine is not None else State.REQUESTED

    @property
    def finished(self) -> bool:
        return self.state.terminal

    @property
    def finished_at_ms(self) -> int:
        if self.result is not None:
            return self.result.finished_at_ms
        return self.events[-1].at_ms if self.events else 0

    def output_bytes(self) -> int:
        """The bytes of output this record holds (the result's, or the terminal event's before it)."""
        held: list[ExecutionResult | RunOutcome] = [self.result] if self.result is not None else []
        held += [e.outcome for e in self.events if e.outcome is not None]
        cases = [c for o in held if o.judgement is not None for c in o.judgement.cases]
        judged = sum(len(c.stdout) + len(c.stderr) for c in cases)
        return judged + sum(len(o.stdout) + len(o.stderr) + len(o.compile_output) for o in held)

    def execution(self) -> Execution:
        if self.result is not None:
            return execution_from_result(self.result, self.trace_id)
        return _from_events(self)

    def event_list(self) -> list[Event]:
        return [
            Event(
                seq=e.seq,
                state=e.state,
                at=iso_utc(e.at_ms) or "",
                at_ms=e.at_ms,
                attempt=e.attempt,
                reason=e.reason,
                field=e.field,
                executor=e.executor,
            )
            for e in self.events
        ]


def _output(o: ExecutionResult | RunOutcome) -> dict[str, Any]:
    """What a run produced, as the execution object shows it: from the result, or from the terminal event."""
    return {
        "limit": _LIMITS.get(o.limit) if o.limit else None,
        "exit_code": o.exit_code,
        "signal": o.signal,
        "stdout": _text(o.stdout),
        "stderr": _text(o.stderr),
        "compile_output": _text(o.compile_output),
        "truncated": Truncated(stdout=o.truncated_stdout, stderr=o.truncated_stderr),
    }


def judgement_out(j: Judgement | None) -> JudgementOut | None:
    if j is None:
        return None
    cases = [
        CaseOut(
            index=c.index,
            verdict=c.verdict,
            state=_STATES.get(c.state or ""),
            limit=_LIMITS.get(c.limit or ""),
            exit_code=c.exit_code,
            signal=c.signal,
            run_ms=c.run_ms,
            cpu_time_ms=c.cpu_time_ms,
            memory_peak_kib=c.memory_peak_kib,
            stdout=_text(c.stdout),
            stderr=_text(c.stderr),
            truncated=Truncated(stdout=c.truncated_stdout, stderr=c.truncated_stderr),
            line=c.line,
            expected_line=c.expected_line,
            actual_line=c.actual_line,
            message=c.message,
        )
        for c in j.cases
    ]
    return JudgementOut(passed=j.passed, total=j.total, first_failure=j.first_failure, checker=j.checker, cases=cases)


def provenance_out(r: ExecutionResult) -> ProvenanceOut | None:
    return msgspec.convert(msgspec.to_builtins(r.provenance), ProvenanceOut) if r.provenance is not None else None


def execution_from_result(r: ExecutionResult, trace_id: str | None = None) -> Execution:
    return Execution(
        id=r.id,
        language=r.language,
        state=r.state,
        **_output(r),
        timings=Timings(queued_ms=r.queued_ms, compile_ms=r.compile_ms, run_ms=r.run_ms, total_ms=r.total_ms),
        usage=Usage(cpu_time_ms=r.cpu_time_ms, memory_peak_kib=r.memory_peak_kib),
        attempts=r.attempts,
        created_at=iso_utc(r.created_at_ms),
        finished_at=iso_utc(r.finished_at_ms),
        reason=r.reason,
        field=r.field,
        trace_id=trace_id,
        judgement=judgement_out(r.judgement),
        batch_id=r.batch_id,
        rejudge_of=r.rejudge_of,
        provenance=provenance_out(r),
    )


def _first_at(events: list[ExecutionEvent], state: State) -> int | None:
    return next((e.at_ms for e in events if e.state is state), None)


def _from_events(record: ExecutionRecord) -> Execution:
    """The execution as far as the events tell, for before the result exists."""
    events = record.events
    last = events[-1] if events else None
    terminal = last if last is not None and last.state.terminal else None
    outcome = terminal.outcome if terminal is not None and terminal.outcome is not None else RunOutcome()
    created = record.created_at_ms if record.created_at_ms is not None else _first_at(events, State.REQUESTED)
    queued, started = _first_at(events, State.QUEUED), _first_at(events, State.STARTED)
    finished_ms = terminal.at_ms if terminal is not None else None
    return Execution(
        id=record.id,
        language=record.language,
        state=record.state,
        **_output(outcome),
        timings=Timings(
            queued_ms=max(0, started - queued) if queued is not None and started is not None else 0,
            compile_ms=outcome.compile_ms,
            run_ms=outcome.run_ms,
            total_ms=max(0, finished_ms - created) if finished_ms is not None and created is not None else 0,
        ),
        usage=Usage(cpu_time_ms=outcome.cpu_time_ms, memory_peak_kib=outcome.memory_peak_kib),
        attempts=max((e.attempt for e in events), default=0),
        created_at=iso_utc(created),
        finished_at=iso_utc(finished_ms),
        reason=terminal.reason if terminal is not None else None,
        field=terminal.field if terminal is not None else None,
        trace_id=record.trace_id,
        judgement=judgement_out(outcome.judgement),
        batch_id=record.batch_id,
        rejudge_of=record.rejudge_of,
    )


class View:
    """Executions by id, folded from events and results. Each fold says whether it changed anything.

    Finished executions are kept within `retention` (age, count, output bytes), oldest finished first.
    """

    def __init__(self, retention: Retention | None = None) -> None:
        self.retention = retention or Retention()
        self._records: dict[str, ExecutionRecord] = {}
        # The finished executions in the order they finished here, with the output bytes each holds.
        self._finished: OrderedDict[str, int] = OrderedDict()
        # The unfinished ones in the order they were first seen, with when: one still unfinished a
        # whole retention age later never will be (a run ends within its wall time, or as ERROR
        # when its lease runs out), e.g. a resubmitted id that validation deduplicated.
        self._open = IdWindow(self.retention.max_age_ms)
        self._output_bytes = 0
        self.evicted = 0
        self.batches = BatchIndex()  # gateway/batch_index.py

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[ExecutionRecord]:
        return iter(self._records.values())

    def get(self, execution_id: str) -> ExecutionRecord | None:
        return self._records.get(execution_id)

    def _record(self, execution_id: str, seen_at_ms: int) -> ExecutionRecord:
        record = self._records.get(execution_id)
        if record is None:
            record = self._records[execution_id] = ExecutionRecord(execution_id)
            self._open.add(execution_id, seen_at_ms)
        return record

    def submitted(
        self,
        execution_id: str,
        *,
        tenant: str,
        language: str,
        created_at_ms: int,
        callback_url: str | None,
        trace_id: str | None = None,
        batch_id: str | None = None,
        rejudge_of: str | None = None,
    ) -> ExecutionRecord:
        """A request this gateway produced: known (as REQUESTED) before its first event comes back."""
        record = self._record(execution_id, created_at_ms)
        if record.machine is None and record.result is None:
            record.tenant, record.language, record.created_at_ms = tenant, language, created_at_ms
            record.callback_url = callback_url
            record.submitted_here = True
            record.trace_id = trace_id
            record.batch_id, record.rejudge_of = batch_id, rejudge_of
            self.batches.add(record)
        return record

    def fold_event(self, event: ExecutionEvent) -> ExecutionRecord | None:
        """Apply one event: the record it changed (even if retention dropped it from the view at once),
        or None for a duplicate, a replay or an impossible transition."""
        record = self._record(event.execution_id, event.at_ms)
        if event.seq in record.pending:
            return None
        record.pending[event.seq] = event
        changed = False
        while True:
            expected = 0 if record.machine is None else record.machine.next_seq
            nxt = record.pending.pop(expected, None)
            if nxt is None:
                break
            try:
                record.machine = apply(record.machine, Transition(nxt.execution_id, nxt.seq, nxt.state))
            except TransitionError:
                continue  # an impossible transition: the view keeps what it had
            _absorb(record, nxt)
            changed = True
        for seq in [s for s in record.pending if record.machine is not None and s < record.machine.next_seq]:
            del record.pending[seq]  # duplicates that arrived while waiting
        while len(record.pending) > MAX_PENDING_EVENTS:
            del record.pending[min(record.pending)]
        if not changed:
            return None
        self.batches.add(record)
        if record.finished:
            self._held(record)
        return record

    def fold_result(self, result: ExecutionResult) -> ExecutionRecord | None:
        """Record the final result: the record (even if retention dropped it at once), or None if known."""
        record = self._record(result.id, result.finished_at_ms)
        if record.result == result:
            return None
        record.result = result
        record.tenant, record.language = result.tenant, result.language
        record.created_at_ms = result.created_at_ms or record.created_at_ms
        record.callback_url = result.callback_url
        record.batch_id = result.batch_id or record.batch_id
        record.rejudge_of = result.rejudge_of or record.rejudge_of
        self.batches.add(record)
        # The result carries the output now: the terminal event's copy of it is not needed any more.
        record.events = [e if e.outcome is None else msgspec.structs.replace(e, outcome=None) for e in record.events]
        self._held(record)
        return record

    # -- retention ------------------------------------------------------------------------------
    @property
    def output_bytes(self) -> int:
        """The output bytes the finished executions hold."""
        return self._output_bytes

    def _held(self, record: ExecutionRecord) -> None:
        """Count a finished record (again, when its result replaces its terminal event), then evict."""
        self._open.discard(record.id)
        size = record.output_bytes()
        self._output_bytes += size - self._finished.pop(record.id, 0)
        self._finished[record.id] = size
        self.prune(record.finished_at_ms)

    def prune(self, now_ms: int) -> int:
        """Drop the oldest finished executions while any bound of the retention is exceeded, and
        the unfinished ones first seen longer than the retention age ago."""
        dropped = 0
        keep = self.retention
        oldest_kept_ms = now_ms - keep.max_age_ms
        for execution_id in self._open.prune(now_ms):
            self.batches.forget(self._records.pop(execution_id, None))
            dropped += 1
        while self._finished:
            execution_id, size = next(iter(self._finished.items()))
            record = self._records.get(execution_id)
            over = (
                len(self._finished) > keep.max_executions
                or self._output_bytes > keep.max_output_bytes
                or (record is not None and record.finished_at_ms < oldest_kept_ms)
            )
            if not over:
                break
            del self._finished[execution_id]
            self.batches.forget(self._records.pop(execution_id, None))
            self._output_bytes -= size
            dropped += 1
        self.evicted += dropped
        return dropped


def _absorb(record: ExecutionRecord, event: ExecutionEvent) -> None:
    """Keep the event, and what its embedded request says, without keeping the request's bytes."""
    kept = event
    if event.request is not None:
        try:
            request = event.decoded_request()
        except (CodecError, ValueError):
            request = None
        if request is not None:
            record.language = request.language
            record.callback_url = request.callback_url
            record.tenant = request.tenant
            record.trace_id = request.trace_id or record.trace_id
            record.batch_id, record.rejudge_of = request.batch_id, request.rejudge_of
            if request.created_at_ms > 0:
                record.created_at_ms = request.created_at_ms
        kept = msgspec.structs.replace(event, request=None)
    elif event.seq == 0:
        record.tenant = event.tenant
    if event.seq == 0 and record.created_at_ms is None:
        record.created_at_ms = event.at_ms
    record.events.append(kept)
