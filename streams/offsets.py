"""Which offset a consumer may commit when its records finish out of order: pure, no I/O.

One tracker for every consumer that finishes records in any order: the executor (launches are
taken in offset order, owned when their STARTED is on the broker) and the webhook dispatcher
(deliveries end when their last attempt does). Per partition, an offset may be committed only up
to the first record taken and not finished yet; Kafka's committed offset is "the next to read".

A partition that goes to another consumer must be forgotten (`forget`) when it is revoked: if it
came back, its stale pending offsets and last commit would otherwise be committed again, below
what its other owner committed meanwhile, and rewind the group.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

P = TypeVar("P", bound=Hashable)


class OffsetTracker(Generic[P]):
    def __init__(self) -> None:
        self._pending: dict[P, set[int]] = {}
        self._next: dict[P, int] = {}  # one past the highest offset taken
        self._committed: dict[P, int] = {}  # what `committed` last recorded

    def take(self, partition: P, offset: int) -> None:
        """A record was taken (in offset order within its partition) and is not finished yet."""
        self._pending.setdefault(partition, set()).add(offset)
        self._next[partition] = max(self._next.get(partition, 0), offset + 1)

    def skip(self, partition: P, offset: int) -> None:
        """A record was taken and finished at once."""
        self._next[partition] = max(self._next.get(partition, 0), offset + 1)

    def done(self, partition: P, offset: int) -> None:
        """A taken record finished (a partition forgotten meanwhile stays forgotten)."""
        self._pending.get(partition, set()).discard(offset)

    def pending(self, partition: P) -> int:
        return len(self._pending.get(partition, ()))

    def in_flight(self) -> int:
        return sum(len(p) for p in self._pending.values())

    def committable(self, partition: P) -> int | None:
        """The offset to commit for the partition (the next one to read after a restart), or None."""
        if partition not in self._next:
            return None
        waiting = self._pending.get(partition)
        return min(waiting) if waiting else self._next[partition]

    def to_commit(self, partitions: Iterable[P]) -> dict[P, int]:
        """Of `partitions`, those whose committable offset moved past the last one `committed` recorded."""
        out: dict[P, int] = {}
        for partition in partitions:
            offset = self.committable(partition)
            if offset is not None and offset > self._committed.get(partition, -1):
                out[partition] = offset
        return out

    def committed(self, offsets: dict[P, int]) -> None:
        """The broker took these commits."""
        for partition, offset in offsets.items():
            if partition in self._next:  # not forgotten while the commit was on its way
                self._committed[partition] = max(offset, self._committed.get(partition, -1))

    def forget(self, partition: P) -> None:
        """The partition went to another consumer: nothing of it is pending or committed here any more."""
        for table in (self._pending, self._next, self._committed):
            table.pop(partition, None)
