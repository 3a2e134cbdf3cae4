"""What the gateway's view keeps of finished executions: bounded by age, count and output bytes (pure)."""

from __future__ import annotations

import asyncio

from aiokafka import ConsumerRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.live import LiveView
from gateway.view import Retention, View
from streams.records import ExecutionEvent, ExecutionResult, RunOutcome
from streams.settings import Settings
from streams.states import State

MIB = 1024 * 1024
PATH = [State.REQUESTED, State.VALIDATED, State.QUEUED, State.SCHEDULED, State.STARTED]


def result(execution_id: str, finished_at_ms: int, out_bytes: int = 0) -> ExecutionResult:
    return ExecutionResult(
        id=execution_id,
        language="python",
        state=State.SUCCEEDED,
        exit_code=0,
        stdout=b"x" * out_bytes,
        attempts=1,
        created_at_ms=finished_at_ms - 10,
        finished_at_ms=finished_at_ms,
    )


def events_to_end(execution_id: str, at_ms: int, out_bytes: int) -> list[ExecutionEvent]:
    """The whole path of one execution, its terminal event carrying `out_bytes` of stdout."""
    events = [ExecutionEvent(execution_id=execution_id, seq=i, state=s, at_ms=at_ms) for i, s in enumerate(PATH)]
    outcome = RunOutcome(exit_code=0, stdout=b"o" * out_bytes)
    events.append(ExecutionEvent(execution_id=execution_id, seq=5, state=State.SUCCEEDED, at_ms=at_ms, outcome=outcome))
    return events


def test_the_oldest_finished_go_first_once_the_output_budget_is_passed() -> None:
    view = View(Retention(max_output_bytes=5 * MIB))
    for i in range(8):
        view.fold_result(result(f"r{i}", 1_000 + i, out_bytes=MIB))
    assert view.output_bytes <= 5 * MIB
    assert [view.get(f"r{i}") is None for i in range(8)] == [True, True, True, False, False, False, False, False]
    assert view.evicted == 3


def test_a_result_replaces_its_terminal_events_copy_of_the_output() -> None:
    view = View()
    for event in events_to_end("a", 1_000, out_bytes=MIB):
        view.fold_event(event)
    assert view.output_bytes == MIB  # finished from its events: the terminal event holds the output
    view.fold_result(result("a", 1_000, out_bytes=MIB))
    assert view.output_bytes == MIB  # held once, by the result
    record = view.get("a")
    assert record is not None and all(e.outcome is None for e in record.events)
    assert record.execution().stdout == "x" * MIB


def test_the_count_bound_and_age_bound_drop_the_oldest_finished_executions() -> None:
    view = View(Retention(max_executions=3, max_age_ms=10_000))
    for event in events_to_end("running", 5_000, 0)[:5]:  # STARTED, not finished
        view.fold_event(event)
    for i in range(5):
        view.fold_result(result(f"r{i}", 1_000 + i))
    assert [e.id for e in view if e.finished] == ["r2", "r3", "r4"]
    assert view.prune(now_ms=11_004) == 2  # r2 and r3 finished more than 10 s before
    assert [e.id for e in view] == ["running", "r4"]  # the running one is only 6 s old


def test_an_execution_unfinished_for_a_whole_retention_age_is_dropped() -> None:
    view = View(Retention(max_age_ms=10_000))
    # A request the gateway produced whose events never come (e.g. an id validation had deduplicated).
    view.submitted("stuck", tenant="t", language="python", created_at_ms=1_000, callback_url=None)
    for event in events_to_end("late", 2_000, 0)[:5]:
        view.fold_event(event)
    assert view.prune(now_ms=11_000) == 0
    assert view.prune(now_ms=11_001) == 1 and view.get("stuck") is None
    for event in events_to_end("late", 2_000, 0)[5:]:
        view.fold_event(event)  # it finished in time: it now counts as finished, from its finish
    assert view.prune(now_ms=12_001) == 1 and view.get("late") is None and len(view) == 0


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=3 * MIB), min_size=1, max_size=40),
    budget_mib=st.integers(min_value=3, max_value=12),
    max_executions=st.integers(min_value=1, max_value=10),
    via_events=st.lists(st.booleans(), min_size=40, max_size=40),
)
def test_the_bounds_always_hold_and_the_count_matches_what_is_held(
    sizes: list[int], budget_mib: int, max_executions: int, via_events: list[bool]
) -> None:
    view = View(Retention(max_output_bytes=budget_mib * MIB, max_executions=max_executions))
    for i, size in enumerate(sizes):
        if via_events[i]:
            for event in events_to_end(f"e{i}", 1_000 + i, size):
                view.fold_event(event)
        view.fold_result(result(f"e{i}", 1_000 + i, size))
        held = [r for r in view if r.finished]
        assert view.output_bytes == sum(r.output_bytes() for r in held)
        assert view.output_bytes <= budget_mib * MIB and len(held) <= max_executions
        assert view.get(f"e{i}") is not None  # the newest is kept (one run fits the budget)


async def test_a_waiter_gets_its_record_even_if_the_view_drops_it_at_once() -> None:
    view = View(Retention(max_output_bytes=MIB))
    live = LiveView(Settings(topic_prefix="unit."), view)
    view.fold_result(result("old", 1_000, out_bytes=MIB // 2))
    waiter = asyncio.create_task(live.wait_for("big", 5.0))
    await asyncio.sleep(0.01)
    # Bigger than the whole budget: the view cannot keep it, yet its waiter gets it.
    big = result("big", 2_000, out_bytes=2 * MIB)
    assert live.fold(ConsumerRecord(live.topics.results, 0, 7, 2_000, 0, b"big", big.encode(), None, 0, 0, []))
    got = await asyncio.wait_for(waiter, 5.0)
    assert view.get("big") is None and view.get("old") is None and view.evicted == 2
    assert got is not None and got.finished and got.execution().stdout == "x" * 2 * MIB
