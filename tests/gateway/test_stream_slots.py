"""Live log stream slots: bounded in all and per tenant; a stream that never started gives its slot back."""

from __future__ import annotations

from gateway.stream_slots import Slot, StreamSlots


class Clock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def test_per_tenant_and_total_bounds_hold_and_a_release_frees_a_slot() -> None:
    slots = StreamSlots(max_streams=3, max_streams_per_tenant=2)
    a1, a2 = slots.reserve("a"), slots.reserve("a")
    assert isinstance(a1, Slot) and isinstance(a2, Slot)
    assert "this tenant" in str(slots.reserve("a"))
    b1 = slots.reserve("b")
    assert isinstance(b1, Slot)
    assert "the gateway serves" in str(slots.reserve("c"))
    slots.release(a1)
    assert isinstance(slots.reserve("c"), Slot) and len(slots) == 3


def test_a_reservation_whose_stream_never_started_lapses() -> None:
    clock = Clock()
    slots = StreamSlots(max_streams=1, max_streams_per_tenant=1, start_grace_s=10, clock=clock)
    started, lapsing = slots.reserve("a"), None
    assert isinstance(started, Slot)
    slots.started(started)
    clock.now_s = 100
    assert isinstance(slots.reserve("b"), str)  # a started stream holds its slot however long it runs
    slots.release(started)
    lapsing = slots.reserve("b")
    assert isinstance(lapsing, Slot)
    clock.now_s = 109
    assert isinstance(slots.reserve("c"), str)
    clock.now_s = 111  # never started: its client went away before the first byte
    assert isinstance(slots.reserve("c"), Slot)
