"""The runtime's Prometheus metrics, on their own registry (the gateway may expose it).

Named `sandbox_<noun>_<unit|total>`, labelled only by language (a small fixed set).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

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
