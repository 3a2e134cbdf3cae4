"""The dedupe window: ids remembered for a while, then forgotten oldest first (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from processors.window import IdWindow, stale_reason


def test_ids_are_forgotten_after_the_window_oldest_first() -> None:
    window = IdWindow(window_ms=1_000)
    window.add("a", 100)
    window.add("b", 600)
    window.add("c", 1_200)
    assert "a" in window and len(window) == 3
    assert window.prune(now_ms=1_100) == []  # "a" is exactly 1 000 ms old: still kept
    assert window.prune(now_ms=1_101) == ["a"]
    assert window.prune(now_ms=2_300) == ["b", "c"]
    assert len(window) == 0 and "b" not in window


def test_an_input_older_than_the_window_is_stale() -> None:
    window = IdWindow(window_ms=1_000)
    assert window.stale(at_ms=99, now_ms=1_100) and not window.stale(at_ms=100, now_ms=1_100)
    assert "AEVATAR_DEDUPE_WINDOW_S" in stale_reason("request", 604800)


def test_ids_read_back_are_added_oldest_first_and_never_in_the_future() -> None:
    window = IdWindow(window_ms=1_000)
    window.add_all({"late": 5_000, "early": 100, "middle": 400}, now_ms=1_000)
    assert list(window) == ["early", "middle", "late"]
    assert window.prune(now_ms=1_450) == ["early", "middle"]  # "late" counts from now, not from 5 000
    assert window.prune(now_ms=2_001) == ["late"]


def test_a_due_prune_runs_at_most_once_per_interval() -> None:
    window = IdWindow(window_ms=400)  # interval: a quarter of the window, 100 ms
    window.add("a", 0)
    assert window.prune_due(now_ms=50) == []  # the first one runs (nothing is old yet)
    window.add("b", 60)
    assert window.prune_due(now_ms=420) == ["a"]
    assert window.prune_due(now_ms=470) == []  # "b" is old by now, but the last prune was 50 ms ago
    assert window.prune_due(now_ms=520) == ["b"]
    assert IdWindow(window_ms=7 * 24 * 3600 * 1000).prune_interval_ms == 60_000


def test_adding_an_id_again_keeps_its_latest_time() -> None:
    window = IdWindow(window_ms=1_000)
    window.add("a", 100)
    window.add("b", 200)
    window.add("a", 900)
    assert window.prune(now_ms=1_500) == ["b"]
    assert list(window) == ["a"]


@given(st.lists(st.integers(min_value=0, max_value=50), max_size=60), st.integers(min_value=0, max_value=3_000))
def test_after_a_prune_exactly_the_ids_inside_the_window_remain(gaps: list[int], now: int) -> None:
    window, at, times = IdWindow(window_ms=500), 0, {}
    for i, gap in enumerate(gaps):
        at += gap
        window.add(f"id{i}", at)
        times[f"id{i}"] = at
    dropped = window.prune(now)
    assert set(dropped) == {i for i, t in times.items() if t < now - 500}
    assert set(window) == {i for i, t in times.items() if t >= now - 500}
