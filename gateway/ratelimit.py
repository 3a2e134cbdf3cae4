"""Per-key token buckets: pure, with the clock passed in."""

from __future__ import annotations

import math
from collections.abc import Mapping
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


@dataclass(frozen=True, slots=True)
class Rate:
    """A bucket's shape: `per_min` tokens a minute refill a bucket of `burst`."""

    per_min: int
    burst: int


class RateLimiter:
    """One bucket per key; a key's first request finds a full bucket.

    `default` is every tenant's rate (None: not limited); `per_tenant` overrides it for the tenants it
    names. A key is what the bucket is counted on (the tenant, or the caller's address when the
    gateway is open); its tenant picks the rate.
    """

    def __init__(
        self,
        *,
        per_min: int | None = None,
        burst: int = 1,
        per_tenant: Mapping[str, Rate] | None = None,
        max_keys: int = 100_000,
    ) -> None:
        self.default = Rate(per_min, burst) if per_min is not None else None
        self.per_tenant = dict(per_tenant or {})
        self.max_keys = max_keys
        self._buckets: dict[str, TokenBucket] = {}

    def rate_for(self, tenant: str) -> Rate | None:
        return self.per_tenant.get(tenant, self.default)

    def check(self, key: str, now_s: float, tenant: str = "") -> int:
        """0 when allowed, else the whole seconds to put in Retry-After (at least 1)."""
        rate = self.rate_for(tenant)
        if rate is None:
            return 0
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._forget_full(now_s)
            capacity = float(max(1, rate.burst))
            bucket = self._buckets[key] = TokenBucket(capacity, max(0, rate.per_min) / 60.0, capacity, now_s)
        wait_s = bucket.take(now_s)
        if wait_s == 0.0:
            return 0
        return 86_400 if math.isinf(wait_s) else max(1, math.ceil(wait_s))

    def _forget_full(self, now_s: float) -> None:
        """Drop buckets that have refilled completely: forgetting them changes nothing."""
        for key, bucket in list(self._buckets.items()):
            if bucket.tokens + (now_s - bucket.updated_s) * bucket.refill_per_s >= bucket.capacity:
                del self._buckets[key]
