"""How many live log streams (SSE) may be open at once: in all, and per tenant (pure, no I/O).

Each stream holds a Kafka consumer that fetches every `kafka_fetch_max_wait_ms` (20 ms) while its
run goes on, so a tenant opening streams without a bound would load the broker and the gateway
with thousands of fetches a second. A slot is reserved when the request is accepted, before the
response starts, so a burst of requests cannot all slip past the count; it is released when the
stream ends. A reservation whose stream never started (the client went away before the first
byte) lapses after `start_grace_s`, so no slot is lost for good.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(eq=False, slots=True)
class Slot:
    tenant: str
    reserved_at_s: float
    started: bool = False


@dataclass
class StreamSlots:
    max_streams: int
    max_streams_per_tenant: int
    start_grace_s: float = 10.0
    clock: Callable[[], float] = time.monotonic
    _held: set[Slot] = field(default_factory=set)

    def reserve(self, tenant: str) -> Slot | str:
        """A slot for one stream of `tenant`, or why there is none."""
        now = self.clock()
        self._held = {s for s in self._held if s.started or now - s.reserved_at_s < self.start_grace_s}
        mine = sum(1 for s in self._held if s.tenant == tenant)
        if mine >= self.max_streams_per_tenant:
            return f"{mine} live log streams of this tenant are open, the most it may have at once"
        if len(self._held) >= self.max_streams:
            return f"{len(self._held)} live log streams are open, the most the gateway serves at once"
        slot = Slot(tenant, now)
        self._held.add(slot)
        return slot

    def started(self, slot: Slot) -> None:
        slot.started = True
        self._held.add(slot)  # back in, should it have lapsed while the response was starting

    def release(self, slot: Slot) -> None:
        self._held.discard(slot)

    def __len__(self) -> int:
        return len(self._held)
