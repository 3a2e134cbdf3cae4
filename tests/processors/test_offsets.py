"""Which offset the executor may commit when launches start out of order: pure."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from processors.offsets import OffsetTracker


def test_nothing_taken_nothing_to_commit() -> None:
    assert OffsetTracker[str]().committable("p") is None


def test_the_commit_stops_at_the_first_launch_not_started() -> None:
    t: OffsetTracker[str] = OffsetTracker()
    for offset in (10, 11, 12):
        t.take("p", offset)
    t.done("p", 12)
    assert t.committable("p") == 10
    t.done("p", 10)
    assert t.committable("p") == 11
    t.done("p", 11)
    assert t.committable("p") == 13


def test_skipped_records_move_the_commit_on() -> None:
    t: OffsetTracker[str] = OffsetTracker()
    t.skip("p", 4)
    assert t.committable("p") == 5
    t.take("p", 5)
    t.skip("p", 6)
    assert t.committable("p") == 5 and t.pending("p") == 1
    t.forget("p")
    assert t.committable("p") is None and t.pending("p") == 0


@given(st.permutations(range(20)), st.sets(st.integers(0, 19)))
def test_never_commits_past_an_unfinished_record(order: list[int], skipped: set[int]) -> None:
    t: OffsetTracker[str] = OffsetTracker()
    for offset in range(20):
        (t.skip if offset in skipped else t.take)("p", offset)
    finished = set(skipped)
    for offset in order:
        if offset in skipped:
            continue
        t.done("p", offset)
        finished.add(offset)
        committable = t.committable("p")
        assert committable is not None
        assert all(o in finished for o in range(committable))  # everything before it is finished
        assert committable == 20 or committable not in finished  # and it stops at the first that is not
