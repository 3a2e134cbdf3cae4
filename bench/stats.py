"""Pure: percentiles and summaries of latency samples (seconds in, milliseconds out)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation; NaN for no samples."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass(frozen=True, slots=True)
class Summary:
    n: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def summarize(samples_s: Sequence[float]) -> Summary:
    ms = [s * 1000 for s in samples_s]
    if not ms:
        return Summary(0, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)
    return Summary(
        len(ms), percentile(ms, 50), percentile(ms, 95), percentile(ms, 99), sum(ms) / len(ms), min(ms), max(ms)
    )


def per_second(times_s: Sequence[float], start_s: float) -> list[int]:
    """How many events fell in each whole second after `start_s` (a throughput-over-time series)."""
    if not times_s:
        return []
    buckets = [0] * (int(max(times_s) - start_s) + 1)
    for t in times_s:
        buckets[max(0, int(t - start_s))] += 1
    return buckets


def steady_rate(series: Sequence[int], trim: float = 0.2) -> float:
    """The median of a per-second series after its first `trim` fraction (start-up) and last second.

    A burst starts with every request queued at once, so its first seconds are spent validating and
    queueing; this is the rate the platform settles at once results flow.
    """
    body = list(series[int(len(series) * trim) : -1])
    if not body:
        return math.nan
    return percentile([float(x) for x in body], 50)
