"""The runtime's Prometheus metrics, on their own registry (the gateway may expose it).

Named `sandbox_<noun>_<unit|total>`, labelled only by language (a small fixed set).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

COMPILE_CACHE_HITS = Counter(
    "sandbox_compile_cache_hits",
    "Compiles skipped because the compile cache held the artifacts.",
    ["language"],
    registry=REGISTRY,
)
COMPILE_CACHE_MISSES = Counter(
    "sandbox_compile_cache_misses",
    "Compiles run because the compile cache did not hold the artifacts.",
    ["language"],
    registry=REGISTRY,
)
COMPILE_CACHE_EVICTIONS = Counter(
    "sandbox_compile_cache_evictions",
    "Compile cache entries removed to keep the cache under its size bound.",
    registry=REGISTRY,
)


def record_compile_cache(language: str, hit: bool) -> None:
    (COMPILE_CACHE_HITS if hit else COMPILE_CACHE_MISSES).labels(language=language).inc()


def compile_cache_count(language: str, hit: bool) -> float:
    """The current value of the hit or miss counter for `language` (for tests and the CLI)."""
    name = "sandbox_compile_cache_hits_total" if hit else "sandbox_compile_cache_misses_total"
    value = REGISTRY.get_sample_value(name, {"language": language})
    return value or 0.0


# -- warm pool (runtime/warm_pool.py) ---------------------------------------------------------------
WARM_POOL_IDLE = Gauge(
    "sandbox_warm_pool_sandboxes",
    "Pre-started sandboxes waiting for a program, per language (every limits key summed).",
    ["language"],
    registry=REGISTRY,
)
WARM_POOL_TARGET = Gauge(
    "sandbox_warm_pool_target_sandboxes",
    "How many idle sandboxes the pool currently aims for, per language (it adapts to the request rate).",
    ["language"],
    registry=REGISTRY,
)
WARM_POOL_HITS = Counter(
    "sandbox_warm_pool_hits",
    "Runs served by a pre-started sandbox.",
    ["language"],
    registry=REGISTRY,
)
WARM_POOL_MISSES = Counter(
    "sandbox_warm_pool_misses",
    "Runs the pool could serve in principle that found no idle sandbox with their limits: cold starts.",
    ["language"],
    registry=REGISTRY,
)
WARM_POOL_STARTS = Counter(
    "sandbox_warm_pool_starts",
    "Sandboxes pre-started in the background.",
    ["language"],
    registry=REGISTRY,
)
WARM_POOL_START_SECONDS = Histogram(
    "sandbox_warm_pool_start_seconds",
    "Time to pre-start one sandbox (workspace, cgroup, bubblewrap, interpreter).",
    ["language"],
    buckets=(0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0, 2.0),
    registry=REGISTRY,
)


def warm_pool_count(language: str, hit: bool) -> float:
    """The current value of the warm pool's hit or miss counter for `language` (for tests and the bench)."""
    name = "sandbox_warm_pool_hits_total" if hit else "sandbox_warm_pool_misses_total"
    value = REGISTRY.get_sample_value(name, {"language": language})
    return value or 0.0
