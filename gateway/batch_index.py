"""Which executions belong to which batch, as the gateway's view has seen them: pure, no I/O.

Fed by the view (gateway/view.py) from what this gateway submitted and from the requests its
events carry, so a batch produced straight to Kafka (requests sharing a `batch_id`) is known too.
A member leaves when the view's retention drops it; a batch with no members left is forgotten.
"""

from __future__ import annotations

from typing import Protocol


class Member(Protocol):
    id: str
    tenant: str
    batch_id: str | None


class BatchIndex:
    def __init__(self) -> None:
        self._members: dict[str, dict[str, None]] = {}  # batch id -> member ids, in the order seen
        self._tenant: dict[str, str] = {}  # batch id -> its tenant (the first member's)

    def __len__(self) -> int:
        return len(self._members)

    def add(self, record: Member) -> None:
        if record.batch_id is None:
            return
        members = self._members.setdefault(record.batch_id, {})
        self._tenant.setdefault(record.batch_id, record.tenant)
        members[record.id] = None

    def forget(self, record: Member | None) -> None:
        if record is None or record.batch_id is None:
            return
        members = self._members.get(record.batch_id)
        if members is None:
            return
        members.pop(record.id, None)
        if not members:
            del self._members[record.batch_id]
            self._tenant.pop(record.batch_id, None)

    def members(self, batch_id: str) -> list[str]:
        return list(self._members.get(batch_id, ()))

    def tenant(self, batch_id: str) -> str | None:
        return self._tenant.get(batch_id)
