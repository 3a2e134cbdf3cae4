"""Execution ids remembered for a dedupe window, then forgotten: pure, no I/O.

Validation (ids taken), completion (ids with a result) and the scheduler (finished entries) each
remember every execution they handled, so that a replayed or repeated input changes nothing. Kept
for ever, those sets grow by one id per execution for the life of a worker (and so does its start-up,
which reads them back). An input older than the window is refused instead, by the record's own
timestamp: within the window the set answers, beyond it the input is stale and is dead-lettered.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping


class IdWindow:
    """Ids with the time each was added, forgotten `window_ms` after that (oldest first)."""

    def __init__(self, window_ms: int) -> None:
        if window_ms < 1:
            raise ValueError("window_ms must be at least 1")
        self.window_ms = window_ms
        self._at: OrderedDict[str, int] = OrderedDict()
        self._pruned_at_ms: int | None = None

    @property
    def prune_interval_ms(self) -> int:
        """How often `prune_due` forgets: every minute, or sooner for a short window."""
        return min(60_000, max(1, self.window_ms // 4))

    def add(self, execution_id: str, at_ms: int) -> None:
        self._at[execution_id] = max(at_ms, self._at.pop(execution_id, at_ms))

    def add_all(self, times: Mapping[str, int], now_ms: int) -> None:
        """Add ids read back from a topic with their records' timestamps (none later than now), oldest first."""
        for execution_id, at_ms in sorted(times.items(), key=lambda item: item[1]):
            self.add(execution_id, min(at_ms, now_ms))

    def discard(self, execution_id: str) -> None:
        self._at.pop(execution_id, None)

    def __contains__(self, execution_id: object) -> bool:
        return execution_id in self._at

    def __len__(self) -> int:
        return len(self._at)

    def __iter__(self) -> Iterator[str]:
        return iter(self._at)

    def stale(self, at_ms: int, now_ms: int) -> bool:
        """Whether an input stamped `at_ms` is older than the window (its id may be forgotten)."""
        return at_ms < now_ms - self.window_ms

    def prune(self, now_ms: int) -> list[str]:
        """Forget the ids added more than the window before `now_ms`; return them.

        Ids are kept in the order they were added, which is their time order up to clock skew
        between producers; an id a little out of order is forgotten a little late.
        """
        self._pruned_at_ms = now_ms
        dropped: list[str] = []
        oldest_kept = now_ms - self.window_ms
        while self._at:
            execution_id, at_ms = next(iter(self._at.items()))
            if at_ms >= oldest_kept:
                break
            del self._at[execution_id]
            dropped.append(execution_id)
        return dropped

    def prune_due(self, now_ms: int) -> list[str]:
        """`prune`, at most once per `prune_interval_ms` (a processor calls this after every batch)."""
        if self._pruned_at_ms is not None and now_ms - self._pruned_at_ms < self.prune_interval_ms:
            return []
        return self.prune(now_ms)


def stale_reason(what: str, window_s: int) -> str:
    """The dead-letter reason of an input older than the dedupe window."""
    return f"stale: the {what} is older than the dedupe window ({window_s} s, AEVATAR_DEDUPE_WINDOW_S)"
