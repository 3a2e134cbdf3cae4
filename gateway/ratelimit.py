"""Per-key token buckets: pure, with the clock passed in."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(slots=True)
class TokenBucket:
    """`capacity` tokens, refilled at `refill_per_s`; each request takes one."""

    capacity: float
    refill_per_s: float
    tokens: float
    updated_s: float

    def take(self, now_s: float) -> float:
        """0.0 if a token was taken, else the seconds until one is available."""
        elapsed = max(0.0, now_s - self.updated_s)
        self.tokens = min(self.capacity, self.tokens + elapsed * self.refill_per_s)
        self.updated_s = now_s
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        if self.refill_per_s <= 0:
            return math.inf
        return (1.0 - self.tokens) / self.refill_per_s


class RateLimiter:
    """One bucket per key; a key's first request finds a full bucket."""

    def __init__(self, *, per_min: int, burst: int, max_keys: int = 100_000) -> None:
        self.capacity = float(max(1, burst))
        self.refill_per_s = max(0, per_min) / 60.0
        self.max_keys = max_keys
        self._buckets: dict[str, TokenBucket] = {}

    def check(self, key: str, now_s: float) -> int:
        """0 when allowed, else the whole seconds to put in Retry-After (at least 1)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._forget_full(now_s)
            bucket = self._buckets[key] = TokenBucket(self.capacity, self.refill_per_s, self.capacity, now_s)
        wait_s = bucket.take(now_s)
        if wait_s == 0.0:
            return 0
        return 86_400 if math.isinf(wait_s) else max(1, math.ceil(wait_s))

    def _forget_full(self, now_s: float) -> None:
        """Drop buckets that have refilled completely: forgetting them changes nothing."""
        for key, bucket in list(self._buckets.items()):
            if bucket.tokens + (now_s - bucket.updated_s) * bucket.refill_per_s >= bucket.capacity:
                del self._buckets[key]
