"""The scheduling policy: pure. Capacity, per-tenant quotas, priority with FIFO, leases.

The scheduling processor feeds it events and persists its entries on a compacted topic;
what it returns is what to emit. It never does I/O itself.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import msgspec

from streams.states import State

# An entry's life here: QUEUED → SCHEDULED → STARTED → DONE (kept as a tombstone, so a
# replayed VALIDATED cannot queue a finished run again).
ACTIVE = frozenset({State.SCHEDULED, State.STARTED})


class Entry(msgspec.Struct, kw_only=True):
    execution_id: str
    tenant: str
    priority: int
    arrival: int
    state: State
    seq: int  # the seq of the last transition this scheduler knows of
    attempt: int = 0
    max_attempts: int = 1
    created_at_ms: int = 0
    lease_until_ms: int | None = None
    request: bytes | None = None
    done: bool = False


@dataclass(frozen=True, slots=True)
class Emit:
    """Emit `state` as transition `seq` of the entry; SCHEDULED also goes to the launches topic."""

    entry: Entry
    state: State
    seq: int
    reason: str | None = None
    resend: bool = False  # the same SCHEDULED again: its launch may have been lost in a crash


_codec_encoder = msgspec.msgpack.Encoder()
_codec_decoder = msgspec.msgpack.Decoder(Entry)


def dump_entry(entry: Entry) -> bytes:
    return _codec_encoder.encode(entry)


def load_entry(data: bytes) -> Entry:
    return _codec_decoder.decode(data)


class Scheduler:
    def __init__(self, capacity: int, tenant_quota: int, lease_ms: int) -> None:
        if capacity < 1 or tenant_quota < 1:
            raise ValueError("capacity and tenant_quota must be at least 1")
        self.capacity = capacity
        self.tenant_quota = tenant_quota
        self.lease_ms = lease_ms
        self.entries: dict[str, Entry] = {}  # every entry, finished ones (tombstones) included
        self._arrivals = 0
        # Indexes over the unfinished entries, so that no decision walks the tombstones:
        # the active ones (SCHEDULED or STARTED) and the queued ones, the latter also as a heap
        # in scheduling order (priority first, then arrival).
        self._active: dict[str, Entry] = {}
        self._waiting: dict[str, Entry] = {}
        self._heap: list[tuple[int, int, str]] = []

    def _place(self, entry: Entry) -> None:
        """Put the entry in the index its state and `done` call for (after any change to them)."""
        execution_id = entry.execution_id
        self._active.pop(execution_id, None)
        was_waiting = self._waiting.pop(execution_id, None) is not None
        if entry.done:
            return
        if entry.state in ACTIVE:
            self._active[execution_id] = entry
        elif entry.state is State.QUEUED:
            self._waiting[execution_id] = entry
            if not was_waiting:
                heapq.heappush(self._heap, (-entry.priority, entry.arrival, execution_id))

    # -- state ---------------------------------------------------------------------
    def clear(self) -> None:
        """Forget every entry (before loading those of a new assignment)."""
        self.entries.clear()
        self._active.clear()
        self._waiting.clear()
        self._heap.clear()
        self._arrivals = 0

    def load(self, entries: list[Entry], now_ms: int) -> None:
        """Rebuild from persisted entries.

        Leases restart from now, with a second term of grace: the executors restart too, and
        their renewals resume only once they have rejoined their group.
        """
        for e in entries:
            if e.state in ACTIVE and not e.done:
                e.lease_until_ms = now_ms + 2 * self.lease_ms
            self.entries[e.execution_id] = e
            self._place(e)
            self._arrivals = max(self._arrivals, e.arrival + 1)

    def forget(self, execution_id: str) -> bool:
        """Drop a finished entry (its dedupe window is over); an unfinished one stays."""
        entry = self.entries.get(execution_id)
        if entry is None or not entry.done:
            return False
        del self.entries[execution_id]
        return True

    def running(self) -> list[Entry]:
        return list(self._active.values())

    def queued(self) -> list[Entry]:
        return sorted(self._waiting.values(), key=lambda e: (-e.priority, e.arrival))

    # -- inputs --------------------------------------------------------------------
    def on_validated(
        self,
        execution_id: str,
        *,
        seq: int,
        tenant: str,
        priority: int,
        max_attempts: int,
        created_at_ms: int,
        request: bytes | None,
    ) -> list[Emit]:
        if execution_id in self.entries:
            return []  # a replayed or duplicated VALIDATED
        entry = Entry(
            execution_id=execution_id,
            tenant=tenant,
            priority=priority,
            arrival=self._arrivals,
            state=State.QUEUED,
            seq=seq + 1,
            max_attempts=max_attempts,
            created_at_ms=created_at_ms,
            request=request,
        )
        self._arrivals += 1
        self.entries[execution_id] = entry
        self._place(entry)
        return [Emit(entry, State.QUEUED, entry.seq), *self.fill()]

    def on_started(self, execution_id: str, seq: int, lease_until_ms: int | None) -> None:
        """The executor took a SCHEDULED run; a STARTED of an older attempt changes nothing."""
        entry = self.entries.get(execution_id)
        if entry is None or entry.done or entry.state is not State.SCHEDULED or seq != entry.seq + 1:
            return
        entry.state = State.STARTED
        entry.seq = seq
        entry.lease_until_ms = lease_until_ms
        self._place(entry)

    def on_lease(self, execution_id: str, seq: int, lease_until_ms: int) -> None:
        entry = self.entries.get(execution_id)
        if entry is not None and not entry.done and entry.state is State.STARTED and entry.seq == seq:
            entry.lease_until_ms = max(entry.lease_until_ms or 0, lease_until_ms)

    def on_terminal(self, execution_id: str, seq: int) -> list[Emit]:
        entry = self.entries.get(execution_id)
        if entry is None or entry.done:
            return []
        entry.done = True
        entry.seq = max(entry.seq, seq)
        entry.request = None  # a tombstone needs no payload
        self._place(entry)
        return self.fill()

    def on_cancel(self, execution_id: str) -> list[Emit]:
        """Drop a QUEUED run. A SCHEDULED or STARTED one belongs to its executor, which cancels it."""
        entry = self.entries.get(execution_id)
        if entry is None or entry.done or entry.state is not State.QUEUED:
            return []
        entry.done = True
        self._place(entry)
        emit = Emit(entry, State.CANCELLED, entry.seq + 1, "cancelled while queued")
        entry.seq += 1
        return [emit]

    def expire(self, now_ms: int) -> list[Emit]:
        """Leases that ran out.

        A STARTED run whose executor stopped renewing is retried while attempts remain, else
        ends as ERROR. A SCHEDULED run that no executor took within a lease term is sent again
        (same seq; executors skip a launch they already took), in case a crash lost its launch.
        """
        out: list[Emit] = []
        for entry in self.running():
            if entry.lease_until_ms is None:
                entry.lease_until_ms = now_ms + self.lease_ms  # first sight of a fresh SCHEDULED
                continue
            if entry.lease_until_ms > now_ms:
                continue
            if entry.state is State.SCHEDULED:
                entry.lease_until_ms = now_ms + self.lease_ms
                out.append(Emit(entry, State.SCHEDULED, entry.seq, resend=True))
                continue
            entry.seq += 1
            entry.lease_until_ms = None
            if entry.attempt < entry.max_attempts:
                entry.state = State.QUEUED
                self._place(entry)
                out.append(Emit(entry, State.QUEUED, entry.seq, f"executor lost its lease on attempt {entry.attempt}"))
            else:
                entry.done = True
                self._place(entry)
                out.append(
                    Emit(entry, State.ERROR, entry.seq, f"executor lost its lease; {entry.attempt} attempts used")
                )
        return out + self.fill()

    # -- the decision --------------------------------------------------------------
    def fill(self) -> list[Emit]:
        """Schedule queued runs while capacity and quotas allow: priority first, FIFO within it."""
        running = self.running()
        free = self.capacity - len(running)
        if free <= 0:
            return []
        per_tenant: dict[str, int] = {}
        for e in running:
            per_tenant[e.tenant] = per_tenant.get(e.tenant, 0) + 1
        out: list[Emit] = []
        passed_over: list[tuple[int, int, str]] = []  # queued, but their tenant is at its quota
        while free > 0 and self._heap:
            item = heapq.heappop(self._heap)
            entry = self._waiting.get(item[2])
            if entry is None or (-entry.priority, entry.arrival) != item[:2]:
                continue  # left the queue since (cancelled, or finished)
            if per_tenant.get(entry.tenant, 0) >= self.tenant_quota:
                passed_over.append(item)
                continue
            entry.state = State.SCHEDULED
            entry.seq += 1
            entry.attempt += 1
            entry.lease_until_ms = None
            del self._waiting[entry.execution_id]
            self._active[entry.execution_id] = entry
            per_tenant[entry.tenant] = per_tenant.get(entry.tenant, 0) + 1
            free -= 1
            out.append(Emit(entry, State.SCHEDULED, entry.seq))
        for item in passed_over:
            heapq.heappush(self._heap, item)
        return out
