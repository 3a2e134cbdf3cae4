"""The state machine, exhaustively: every pair of states, and hypothesis sequences."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.states import (
    TERMINAL_STATES,
    ExecutionState,
    IllegalTransition,
    OutOfOrder,
    State,
    Transition,
    advance,
    allowed,
    apply,
    begin,
)

EXPECTED_EDGES = {
    (State.REQUESTED, State.VALIDATED),
    (State.REQUESTED, State.REJECTED),
    (State.VALIDATED, State.QUEUED),
    (State.VALIDATED, State.ERROR),
    (State.QUEUED, State.SCHEDULED),
    (State.QUEUED, State.CANCELLED),
    (State.QUEUED, State.ERROR),
    (State.SCHEDULED, State.STARTED),
    (State.SCHEDULED, State.CANCELLED),
    (State.SCHEDULED, State.ERROR),
    (State.SCHEDULED, State.QUEUED),
    (State.STARTED, State.QUEUED),
    *[
        (State.STARTED, t)
        for t in (
            State.SUCCEEDED,
            State.FAILED,
            State.COMPILE_ERROR,
            State.LIMIT_EXCEEDED,
            State.CANCELLED,
            State.ERROR,
        )
    ],
}


@pytest.mark.parametrize(("current", "target"), list(itertools.product(State, State)))
def test_every_pair(current: State, target: State) -> None:
    state = ExecutionState("x", current, 3)
    event = Transition("x", 4, target)
    if (current, target) in EXPECTED_EDGES:
        assert allowed(current, target)
        assert apply(state, event) == ExecutionState("x", target, 4)
    else:
        assert not allowed(current, target)
        with pytest.raises(IllegalTransition):
            apply(state, event)


def test_terminal_states_are_exactly_the_design_list() -> None:
    assert {s.value for s in TERMINAL_STATES} == {
        "SUCCEEDED",
        "FAILED",
        "COMPILE_ERROR",
        "LIMIT_EXCEEDED",
        "CANCELLED",
        "REJECTED",
        "ERROR",
    }
    for s in TERMINAL_STATES:
        assert s.terminal
        assert not any(allowed(s, t) for t in State)


@pytest.mark.parametrize("target", [s for s in State if s is not State.REQUESTED])
def test_only_requested_opens(target: State) -> None:
    with pytest.raises(IllegalTransition):
        apply(None, Transition("x", 0, target))
    assert apply(None, Transition("x", 0, State.REQUESTED)).state is State.REQUESTED


def test_seq_must_be_next() -> None:
    state, _ = begin("x")
    with pytest.raises(OutOfOrder, match="duplicate"):
        apply(state, Transition("x", 0, State.VALIDATED))
    with pytest.raises(OutOfOrder, match="gap"):
        apply(state, Transition("x", 2, State.VALIDATED))


def test_happy_path_with_consecutive_seq() -> None:
    state, first = begin("x")
    seqs = [first.seq]
    for target in (State.VALIDATED, State.QUEUED, State.SCHEDULED, State.STARTED, State.SUCCEEDED):
        state, event = advance(state, target)
        seqs.append(event.seq)
    assert seqs == [0, 1, 2, 3, 4, 5]
    assert state.terminal


def _legal_walk(data: st.DataObject) -> list[Transition]:
    state, first = begin("x")
    events = [first]
    while not state.terminal:
        options = sorted(transitions_from(state.state), key=lambda s: s.value)
        target = data.draw(st.sampled_from(options))
        state, event = advance(state, target)
        events.append(event)
        if len(events) > 30:
            break
    return events


def transitions_from(s: State) -> set[State]:
    return {t for t in State if allowed(s, t)}


def _fold(events: list[Transition]) -> ExecutionState | None:
    """Apply a stream as a consumer does: refused events change nothing."""
    state: ExecutionState | None = None
    for e in events:
        try:
            state = apply(state, e)
        except (IllegalTransition, OutOfOrder):
            continue
    return state


@given(st.data())
def test_duplicates_change_nothing(data: st.DataObject) -> None:
    events = _legal_walk(data)
    clean = _fold(events)
    noisy: list[Transition] = []
    for e in events:
        noisy.extend([e] * data.draw(st.integers(1, 3)))
        # A replay of anything already seen, at a random point.
        replay: bool = data.draw(st.booleans())
        if replay:
            noisy.append(data.draw(st.sampled_from(noisy)))
    assert _fold(noisy) == clean


@given(st.data())
def test_reordering_never_yields_an_illegal_state(data: st.DataObject) -> None:
    events = _legal_walk(data)
    shuffled = data.draw(st.permutations(events))
    state = _fold(list(shuffled))
    # Whatever got applied is a prefix of the true history: seq k always means events[k].
    if state is not None:
        assert events[state.seq].state is state.state
        assert state.seq <= events[-1].seq
