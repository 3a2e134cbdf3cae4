"""Which offset a consumer may commit when its records finish out of order (the executor, the webhook
dispatcher): pure."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streams.offsets import OffsetTracker


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


def test_offsets_commit_only_past_finished_deliveries() -> None:
    """The webhook dispatcher's use: commit what moved since the last commit, only past finished ones."""
    tracker: OffsetTracker[str] = OffsetTracker()
    for offset in (10, 11, 12):
        tracker.take("p0", offset)
    assert tracker.to_commit(["p0"]) == {"p0": 10}
    tracker.committed({"p0": 10})
    tracker.done("p0", 11)
    assert tracker.to_commit(["p0"]) == {}  # 10 is still in flight
    tracker.done("p0", 10)
    assert tracker.to_commit(["p0"]) == {"p0": 12}
    tracker.committed({"p0": 12})
    tracker.done("p0", 12)
    assert tracker.to_commit(["p0"]) == {"p0": 13} and tracker.in_flight() == 0
    tracker.forget("p0")
    assert tracker.to_commit(["p0"]) == {}


def test_to_commit_is_only_for_the_partitions_asked() -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    tracker.skip("a", 3)
    tracker.skip("b", 7)
    assert tracker.to_commit(["a"]) == {"a": 4}
    assert tracker.to_commit(["a", "b", "c"]) == {"a": 4, "b": 8}


def test_a_partition_that_comes_back_never_rewinds_the_group() -> None:
    """Revoked with a delivery in flight at 5, the partition's other owner commits up to 40; when it
    comes back (from offset 40), nothing stale of before is committed: not 5, not the old commit."""
    tracker: OffsetTracker[str] = OffsetTracker()
    tracker.skip("p", 3)
    tracker.committed({"p": 4})
    tracker.take("p", 5)
    tracker.forget("p")  # revoked
    tracker.done("p", 5)  # a delivery that ended after the revocation changes nothing
    tracker.committed({"p": 6})  # nor does a commit answered after it
    assert tracker.committable("p") is None and tracker.to_commit(["p"]) == {}
    tracker.take("p", 40)  # assigned again: the group's committed offset is 40
    assert tracker.to_commit(["p"]) == {"p": 40}
    tracker.done("p", 40)
    assert tracker.to_commit(["p"]) == {"p": 41}
