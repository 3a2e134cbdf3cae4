"""The bench's pure parts: the settled rate of a burst and the per-hop breakdown."""

from __future__ import annotations

import math

from bench.report import broker_clutter
from bench.report import table as report_table
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


def test_a_cluttered_broker_is_named_with_its_biggest_prefixes() -> None:
    few = ["__consumer_offsets", "sandbox.events", "sandbox.results"]
    assert broker_clutter(few) is None
    many = few + [f"test{i % 3}.t{i}" for i in range(400)] + [f"bench1.x{i}" for i in range(2)]
    warning = broker_clutter(many, max_topics=300)
    assert warning is not None
    assert warning.startswith("the broker holds 405 topics before this run")
    # The three test prefixes hold 134/133/133, then the platform's own and the bench's two.
    assert "'test0.' (134), 'test1.' (133), 'test2.' (133), 'bench1.' (2), 'sandbox.' (2)" in warning
    assert "__consumer_offsets" not in warning and "aevatar-sandbox topics delete PREFIX" in warning
    assert broker_clutter(many, max_topics=405) is None


def test_the_table_carries_the_clutter_warning() -> None:
    floor = {"bwrap": {"p50_ms": 10.0, "p95_ms": 11.0, "p99_ms": 12.0}, "bwrap_rate_per_s": 90.0}
    floor["plain"] = {"p50_ms": 5.0, "p95_ms": 6.0, "p99_ms": 7.0}
    result = {"floor": floor, "phases": [], "broker": {"topics_at_start": 3}}
    assert "Warning" not in report_table(result)
    result["broker"] = {"topics_at_start": 999, "warning": "the broker holds 999 topics"}
    assert report_table(result).endswith("**Warning:** the broker holds 999 topics")
