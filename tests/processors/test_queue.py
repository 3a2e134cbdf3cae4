"""The scheduling policy, pure: capacity, quotas, priority with FIFO, cancel, leases, replays."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from processors.queue import Emit, Scheduler, dump_entry, load_entry
from streams.states import State


def validated(s: Scheduler, i: str, *, tenant: str = "t", priority: int = 0, max_attempts: int = 2) -> list[Emit]:
    return s.on_validated(
        i, seq=1, tenant=tenant, priority=priority, max_attempts=max_attempts, created_at_ms=0, request=b"r"
    )


def scheduled(emits: list[Emit]) -> list[str]:
    return [e.entry.execution_id for e in emits if e.state is State.SCHEDULED]


def test_capacity_holds_and_a_finished_run_frees_its_slot() -> None:
    s = Scheduler(capacity=2, tenant_quota=10, lease_ms=1000)
    out = [scheduled(validated(s, f"r{i}")) for i in range(4)]
    assert out == [["r0"], ["r1"], [], []]
    assert scheduled(s.on_terminal("r0", 5)) == ["r2"]
    assert scheduled(s.on_terminal("r0", 5)) == []  # a duplicate terminal frees nothing
    assert [e.execution_id for e in s.running()] == ["r1", "r2"]


def test_transitions_are_queued_then_scheduled_with_consecutive_seq() -> None:
    s = Scheduler(capacity=1, tenant_quota=1, lease_ms=1000)
    emits = validated(s, "a")
    assert [(e.state, e.seq) for e in emits] == [(State.QUEUED, 2), (State.SCHEDULED, 3)]
    assert emits[1].entry.attempt == 1


def test_priority_first_then_fifo() -> None:
    s = Scheduler(capacity=1, tenant_quota=10, lease_ms=1000)
    validated(s, "busy")
    for name, prio in [("low1", 0), ("high1", 5), ("low2", 0), ("high2", 5)]:
        validated(s, name, priority=prio)
    order = []
    current = "busy"
    for _ in range(4):
        nxt = scheduled(s.on_terminal(current, 9))
        order += nxt
        current = nxt[0]
    assert order == ["high1", "high2", "low1", "low2"]


def test_tenant_quota_lets_other_tenants_pass() -> None:
    s = Scheduler(capacity=4, tenant_quota=1, lease_ms=1000)
    assert scheduled(validated(s, "a1", tenant="a")) == ["a1"]
    assert scheduled(validated(s, "a2", tenant="a")) == []
    assert scheduled(validated(s, "b1", tenant="b")) == ["b1"]
    assert scheduled(s.on_terminal("a1", 5)) == ["a2"]


def test_cancel_drops_only_queued_runs() -> None:
    s = Scheduler(capacity=1, tenant_quota=1, lease_ms=1000)
    validated(s, "running")
    validated(s, "waiting")
    (cancel,) = s.on_cancel("waiting")
    assert (cancel.state, cancel.seq) == (State.CANCELLED, 3)
    assert s.on_cancel("waiting") == []
    assert s.on_cancel("running") == []  # its executor cancels it
    assert scheduled(s.on_terminal("running", 5)) == []


def test_replayed_validated_after_the_end_queues_nothing() -> None:
    s = Scheduler(capacity=1, tenant_quota=1, lease_ms=1000)
    validated(s, "a")
    s.on_terminal("a", 5)
    assert validated(s, "a") == []


def test_only_a_finished_entry_can_be_forgotten() -> None:
    s = Scheduler(capacity=1, tenant_quota=1, lease_ms=1000)
    validated(s, "a")
    validated(s, "b")  # queued behind a
    s.on_started("a", 4, 5_000)
    assert not s.forget("a") and not s.forget("b") and not s.forget("nobody")
    s.on_terminal("a", 5)
    assert s.forget("a") and "a" not in s.entries
    assert [e.execution_id for e in s.running()] == ["b"]  # forgetting touches nothing else


def test_lost_lease_retries_then_errors() -> None:
    s = Scheduler(capacity=1, tenant_quota=1, lease_ms=1000)
    validated(s, "a", max_attempts=2)
    s.on_started("a", 4, lease_until_ms=1000)
    retry = s.expire(now_ms=2000)
    assert [(e.state, e.seq) for e in retry] == [(State.QUEUED, 5), (State.SCHEDULED, 6)]
    assert retry[1].entry.attempt == 2
    s.on_started("a", 7, lease_until_ms=3000)
    s.on_lease("a", 7, 5000)
    assert s.expire(now_ms=4000) == []  # renewed
    (error,) = s.expire(now_ms=6000)
    assert (error.state, error.seq) == (State.ERROR, 8)


def test_a_started_of_an_old_attempt_changes_nothing() -> None:
    s = Scheduler(capacity=1, tenant_quota=1, lease_ms=1000)
    validated(s, "a")
    s.on_started("a", 4, lease_until_ms=1000)
    s.expire(now_ms=2000)  # retried: now SCHEDULED at seq 6
    s.on_started("a", 4, lease_until_ms=99_999)
    assert s.entries["a"].state is State.SCHEDULED


def test_a_scheduled_run_no_executor_took_is_sent_again() -> None:
    s = Scheduler(capacity=1, tenant_quota=1, lease_ms=1000)
    validated(s, "a")
    assert s.expire(now_ms=0) == []  # first sight starts the lease term
    (again,) = s.expire(now_ms=1500)
    assert again.resend and (again.state, again.seq) == (State.SCHEDULED, 3)


def test_entries_survive_a_restart() -> None:
    s = Scheduler(capacity=1, tenant_quota=1, lease_ms=1000)
    validated(s, "a")
    validated(s, "b")
    saved = [load_entry(dump_entry(e)) for e in s.entries.values()]
    t = Scheduler(capacity=1, tenant_quota=1, lease_ms=1000)
    t.load(saved, now_ms=0)
    assert [e.execution_id for e in t.running()] == ["a"]
    assert [e.execution_id for e in t.queued()] == ["b"]
    assert scheduled(t.on_terminal("a", 5)) == ["b"]


@given(st.lists(st.tuples(st.sampled_from("abcdefgh"), st.sampled_from(["v", "end", "cancel"])), max_size=60))
def test_capacity_is_never_exceeded(ops: list[tuple[str, str]]) -> None:
    s = Scheduler(capacity=3, tenant_quota=2, lease_ms=1000)
    for name, op in ops:
        if op == "v":
            validated(s, name, tenant="x" if name in "abcd" else "y")
        elif op == "end":
            s.on_terminal(name, 99)
        else:
            s.on_cancel(name)
        running = s.running()
        assert len(running) <= 3
        for tenant in ("x", "y"):
            assert sum(e.tenant == tenant for e in running) <= 2


OPS = st.sampled_from(["v", "v0", "start", "end", "cancel", "expire"])


@given(st.lists(st.tuples(st.sampled_from("abcdefgh"), OPS, st.integers(0, 3)), max_size=80))
def test_the_indexes_agree_with_a_walk_over_every_entry(ops: list[tuple[str, str, int]]) -> None:
    """running(), queued() and what fill() picks are what a scan of all entries (tombstones too) gives."""
    s = Scheduler(capacity=3, tenant_quota=2, lease_ms=1000)
    clock = 0
    for name, op, n in ops:
        clock += 700
        tenant = "x" if name in "abcd" else "y"
        if op in ("v", "v0"):
            validated(s, name, tenant=tenant, priority=n if op == "v" else 0, max_attempts=2)
        elif op == "start" and name in s.entries:
            s.on_started(name, s.entries[name].seq + 1, clock + 1000)
        elif op == "end":
            s.on_terminal(name, 99)
        elif op == "cancel":
            s.on_cancel(name)
        else:
            s.expire(clock)
        every = list(s.entries.values())
        walk_running = {e.execution_id for e in every if not e.done and e.state in (State.SCHEDULED, State.STARTED)}
        walk_queued = sorted(
            (e for e in every if not e.done and e.state is State.QUEUED), key=lambda e: (-e.priority, e.arrival)
        )
        assert {e.execution_id for e in s.running()} == walk_running
        assert [e.execution_id for e in s.queued()] == [e.execution_id for e in walk_queued]
        # Capacity is used whenever something eligible waits.
        per_tenant = {t: sum(s.entries[i].tenant == t for i in walk_running) for t in ("x", "y")}
        eligible = [e for e in walk_queued if per_tenant[e.tenant] < 2]
        assert not (eligible and len(walk_running) < 3)
