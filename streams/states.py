"""The execution state machine: pure, no I/O.

REQUESTED → VALIDATED → QUEUED → SCHEDULED → STARTED → terminal
REQUESTED → REJECTED          QUEUED | SCHEDULED | STARTED → CANCELLED

Every transition carries a per-execution sequence number. The first event of an
execution (REQUESTED) has seq 0, and each accepted transition has the next seq.
`apply` refuses anything else with a typed error, which is what makes replays and
duplicates harmless: a replayed event has a seq that was already applied.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from streams.errors import StreamsError


class State(enum.StrEnum):
    REQUESTED = "REQUESTED"
    VALIDATED = "VALIDATED"
    QUEUED = "QUEUED"
    SCHEDULED = "SCHEDULED"
    STARTED = "STARTED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    COMPILE_ERROR = "COMPILE_ERROR"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"
    ERROR = "ERROR"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


class Limit(enum.StrEnum):
    """The limit a LIMIT_EXCEEDED run hit."""

    WALL_TIME = "wall_time"
    CPU_TIME = "cpu_time"
    MEMORY = "memory"
    OUTPUT = "output"
    PROCESSES = "processes"
    DISK = "disk"


TERMINAL_STATES: frozenset[State] = frozenset(
    {
        State.SUCCEEDED,
        State.FAILED,
        State.COMPILE_ERROR,
        State.LIMIT_EXCEEDED,
        State.CANCELLED,
        State.REJECTED,
        State.ERROR,
    }
)

_RUN_ENDINGS = frozenset(
    {State.SUCCEEDED, State.FAILED, State.COMPILE_ERROR, State.LIMIT_EXCEEDED, State.CANCELLED, State.ERROR}
)

# ERROR is the platform's fault; it may end a run at any non-terminal stage after
# validation (for example an executor whose lease expired past max_attempts).
TRANSITIONS: dict[State, frozenset[State]] = {
    State.REQUESTED: frozenset({State.VALIDATED, State.REJECTED}),
    State.VALIDATED: frozenset({State.QUEUED, State.ERROR}),
    State.QUEUED: frozenset({State.SCHEDULED, State.CANCELLED, State.ERROR}),
    # SCHEDULED → QUEUED is a retry after a lost lease, bounded by max_attempts.
    State.SCHEDULED: frozenset({State.STARTED, State.CANCELLED, State.ERROR, State.QUEUED}),
    State.STARTED: _RUN_ENDINGS | {State.QUEUED},
    **{s: frozenset() for s in TERMINAL_STATES},
}


class TransitionError(StreamsError):
    """Base for a transition that `apply` refuses."""


class IllegalTransition(TransitionError):
    def __init__(self, execution_id: str, current: State | None, target: State) -> None:
        self.execution_id, self.current, self.target = execution_id, current, target
        where = current.value if current is not None else "nothing"
        super().__init__(f"execution {execution_id}: {where} → {target.value} is not allowed")


class OutOfOrder(TransitionError):
    """The event's seq is not the next one: a duplicate, a replay or a gap."""

    def __init__(self, execution_id: str, expected_seq: int, got_seq: int) -> None:
        self.execution_id, self.expected_seq, self.got_seq = execution_id, expected_seq, got_seq
        kind = "duplicate or replay" if got_seq < expected_seq else "gap"
        super().__init__(f"execution {execution_id}: seq {got_seq} where {expected_seq} was expected ({kind})")


@dataclass(frozen=True, slots=True)
class Transition:
    """One state change of one execution, as the state machine sees it."""

    execution_id: str
    seq: int
    state: State


@dataclass(frozen=True, slots=True)
class ExecutionState:
    """What the state machine knows about one execution."""

    execution_id: str
    state: State
    seq: int

    @property
    def next_seq(self) -> int:
        return self.seq + 1

    @property
    def terminal(self) -> bool:
        return self.state.terminal


def allowed(current: State | None, target: State) -> bool:
    """Whether `current → target` is a legal transition (None means: no event yet)."""
    if current is None:
        return target is State.REQUESTED
    return target in TRANSITIONS[current]


def apply(current: ExecutionState | None, event: Transition) -> ExecutionState:
    """Apply one transition, or raise a TransitionError and change nothing."""
    expected_seq = 0 if current is None else current.next_seq
    if event.seq != expected_seq:
        raise OutOfOrder(event.execution_id, expected_seq, event.seq)
    if current is not None and current.execution_id != event.execution_id:
        raise IllegalTransition(event.execution_id, current.state, event.state)
    if not allowed(current.state if current else None, event.state):
        raise IllegalTransition(event.execution_id, current.state if current else None, event.state)
    return ExecutionState(event.execution_id, event.state, event.seq)


def begin(execution_id: str) -> tuple[ExecutionState, Transition]:
    """The REQUESTED transition that opens an execution."""
    first = Transition(execution_id, 0, State.REQUESTED)
    return apply(None, first), first


def advance(current: ExecutionState, target: State) -> tuple[ExecutionState, Transition]:
    """The next transition from `current` to `target`, already applied."""
    event = Transition(current.execution_id, current.next_seq, target)
    return apply(current, event), event
