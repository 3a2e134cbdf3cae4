"""The bench's pure parts: the settled rate of a burst and the per-hop breakdown."""

from __future__ import annotations

import math

from bench.stages import HOPS, hop_medians, points, table
from bench.stats import steady_rate
from streams.records import ExecutionEvent
from streams.states import State


def test_steady_rate_skips_the_start_and_the_last_partial_second() -> None:
    series = [1, 2, 3, 40, 42, 44, 41, 40, 43, 5]
    assert steady_rate(series) == 41  # the median of [3, 40, 42, 44, 41, 40, 43]
    assert math.isnan(steady_rate([7]))


def _event(execution_id: str, seq: int, state: State, at_ms: int) -> ExecutionEvent:
    return ExecutionEvent(execution_id=execution_id, seq=seq, state=state, at_ms=at_ms, tenant="t")


def test_hops_are_differences_of_consecutive_points() -> None:
    states = [State.REQUESTED, State.VALIDATED, State.QUEUED, State.SCHEDULED, State.STARTED, State.SUCCEEDED]
    events = [
        _event("a", i, s, 1000 + at) for i, (s, at) in enumerate(zip(states, [5, 5, 12, 13, 20, 40], strict=True))
    ]
    events.append(_event("a", 6, State.FAILED, 2000))  # a later terminal does not move "end"
    by_id = points(events)
    assert by_id["a"]["end"] == 1040 and by_id["a"]["REQUESTED"] == 1005
    hops = hop_medians(by_id, {"a": (1000, 1050), "missing": (0, 10)})
    # "missing" has no events: it counts only in the total (sent → received), median of 50 and 10.
    assert [hops[name]["p50_ms"] for name, _, _ in HOPS] == [5, 0, 7, 1, 7, 20, 10, 30]
    assert hops["total"]["n"] == 2 and hops["REQUESTED → VALIDATED"]["n"] == 1
    assert "| STARTED → terminal (its ack, then the backend's run) | 20 |" in table({"phase": hops})
