"""Which offset a consumer may commit when its records finish out of order: pure, no I/O.

The executor takes launches in offset order but owns them (their STARTED is on the broker) in
any order. An offset may be committed only up to the first record taken and not yet owned.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

P = TypeVar("P", bound=Hashable)


class OffsetTracker(Generic[P]):
    def __init__(self) -> None:
        self._pending: dict[P, set[int]] = {}
        self._next: dict[P, int] = {}  # one past the highest offset taken

    def take(self, partition: P, offset: int) -> None:
        """A record was taken (in offset order within its partition) and is not finished yet."""
        self._pending.setdefault(partition, set()).add(offset)
        self._next[partition] = max(self._next.get(partition, 0), offset + 1)

    def skip(self, partition: P, offset: int) -> None:
        """A record was taken and finished at once."""
        self._next[partition] = max(self._next.get(partition, 0), offset + 1)

    def done(self, partition: P, offset: int) -> None:
        self._pending.get(partition, set()).discard(offset)

    def pending(self, partition: P) -> int:
        return len(self._pending.get(partition, ()))

    def committable(self, partition: P) -> int | None:
        """The offset to commit for the partition (the next one to read after a restart), or None."""
        if partition not in self._next:
            return None
        waiting = self._pending.get(partition)
        return min(waiting) if waiting else self._next[partition]

    def forget(self, partition: P) -> None:
        """The partition went to another consumer."""
        self._pending.pop(partition, None)
        self._next.pop(partition, None)
