"""The scaling plan's arithmetic (bench/scaling.py): pure, no broker, nothing timed."""

from __future__ import annotations

import argparse
import struct
from dataclasses import replace

import pytest

from bench import scaling
from bench.scaling import Assumptions, Inputs, ceil_div, members_needed, plan, round_up, segment_stats
from streams import topics as catalog

DAY_S = 86_400


@pytest.mark.parametrize(
    ("a", "b", "want"), [(0, 4, 0), (1, 4, 1), (4, 4, 1), (5, 4, 2), (3.0000000001, 1, 3), (28, 16, 2)]
)
def test_ceil_div(a: float, b: float, want: int) -> None:
    assert ceil_div(a, b) == want


@pytest.mark.parametrize(("n", "multiple", "want"), [(28, 16, 32), (32, 16, 32), (12, 3, 12), (13, 3, 15)])
def test_round_up(n: int, multiple: int, want: int) -> None:
    assert round_up(n, multiple) == want


@pytest.mark.parametrize(
    ("runs_per_s", "cpu_ms", "utilization", "want"),
    [
        (100, 6, 0.6, 1),  # 0.6 cores at 60%: one member
        (100, 7, 0.6, 2),  # 0.7 cores
        (1000, 5, 0.5, 10),
        (0.001, 1, 0.6, 1),  # never fewer than one
    ],
)
def test_members_needed(runs_per_s: float, cpu_ms: float, utilization: float, want: int) -> None:
    assert members_needed(runs_per_s, cpu_ms, utilization) == want


INPUTS = Inputs(
    platform_cpu_ms=10.0,
    sandbox_cpu_ms=20.0,
    broker_cpu_ms=4.0,
    run_hold_ms=10.0,
    refill_ms=15.0,
    broker_requests_per_run=16.0,
    topics={"sandbox.requests": (1.0, 300.0), "sandbox.events": (7.0, 2100.0), "sandbox.results": (1.0, 400.0)},
)


@pytest.mark.parametrize("runs_per_min", [6_000, 100_000, 1_000_000])
def test_rates_and_bytes_per_topic_follow_the_runs(runs_per_min: float) -> None:
    a = Assumptions(runs_per_min=runs_per_min)
    p = plan(INPUTS, a)
    rate = runs_per_min / 60
    by = {t.name: t for t in p.topics}
    assert p.runs_per_s == pytest.approx(rate)
    assert by["sandbox.events"].records_per_s == pytest.approx(7 * rate)
    assert by["sandbox.events"].bytes_per_s == pytest.approx(2100 * rate)
    # Not measured in one process (the express lane): one record per run, the size of a mean event.
    assert not by["sandbox.launches"].measured
    assert by["sandbox.launches"].bytes_per_s == pytest.approx(300 * rate)
    assert p.broker_requests_per_s == pytest.approx(16 * rate)
    assert p.ingress_bytes_per_s == pytest.approx(sum(t.bytes_per_s for t in p.topics))
    assert p.disk_write_bytes_per_s == pytest.approx(3 * p.ingress_bytes_per_s)


@pytest.mark.parametrize("replication", [1, 3, 5])
def test_retention_is_bytes_per_second_times_retention_times_replicas(replication: int) -> None:
    a = Assumptions(runs_per_min=60_000, replication=replication, forever_horizon_days=30)
    by = {t.name: t for t in plan(INPUTS, a).topics}
    assert by["sandbox.requests"].retained_bytes == pytest.approx(1000 * 300 * 7 * DAY_S * replication)
    # Kept for ever, shown at the horizon; compaction keeps 6 of the 7 events of a run (SCHEDULED twice).
    assert by["sandbox.events"].retained_bytes == pytest.approx(1000 * 2100 * 6 / 7 * 30 * DAY_S * replication)
    assert by["sandbox.results"].retained_bytes == pytest.approx(1000 * 400 * 30 * DAY_S * replication)


@pytest.mark.parametrize(
    ("cores_per_host", "want_hosts"),
    [(8, 4), (16, 2), (32, 1)],  # 1000 runs/s x (20 + 10 x 0.2) ms = 22 cores, hosts at 75%
)
def test_executor_hosts_from_cpu_per_run(cores_per_host: int, want_hosts: int) -> None:
    a = Assumptions(runs_per_min=60_000, executor_cores_per_host=cores_per_host)
    p = plan(INPUTS, a)
    assert p.executor_cores == pytest.approx(22.0)
    assert p.executor_hosts == want_hosts
    assert p.slots_per_host >= cores_per_host
    # Little's law with headroom: runs/s per host x 15 ms refill x 2, plus one.
    assert p.warm_pool_per_host == pytest.approx(1000 / want_hosts * 0.015 * 2 + 1, abs=1)
    assert p.members["launch"] >= p.executor_hosts  # one launch consumer per host


@pytest.mark.parametrize(("broker_cpu_ms", "want_cpu_brokers"), [(4.0, 2), (30.0, 10), (60.0, 19)])
def test_brokers_from_cpu_per_run(broker_cpu_ms: float, want_cpu_brokers: int) -> None:
    # 1000 runs/s x broker CPU x RF 3, on 16 cores at 60%.
    a = Assumptions(runs_per_min=60_000)
    p = plan(replace(INPUTS, broker_cpu_ms=broker_cpu_ms), a)
    assert p.brokers_by["cpu"] == want_cpu_brokers
    assert p.brokers == max(3, want_cpu_brokers)


@pytest.mark.parametrize("runs_per_min", [1_000, 100_000, 2_000_000])
def test_partitions_cover_the_members_with_headroom_on_every_broker(runs_per_min: float) -> None:
    a = Assumptions(runs_per_min=runs_per_min)
    p = plan(INPUTS, a)
    assert p.partitions >= 12
    assert p.partitions % p.brokers == 0
    assert p.partitions >= max(p.members.values()) * a.headroom
    assert p.partitions >= max(t.partitions_for_bytes for t in p.topics) * a.headroom


def test_the_retentions_match_the_topic_catalog() -> None:
    specs = {spec.base: spec for spec in catalog.CATALOG}
    for facts in scaling.CATALOG_FACTS:
        spec = specs[facts.name]
        if facts.retention_days is None:
            assert spec.compact and not spec.expires, facts.name
        elif spec.compact and not spec.expires:
            # Compacted for ever, but its entries are tombstoned after the dedupe window.
            assert facts.name == catalog.SCHEDULER_QUEUE.base
        else:
            assert spec.retention_ms == facts.retention_days * DAY_S * 1000, facts.name


def _batch(count: int, *, control: bool = False, body: bytes = b"x" * 20) -> bytes:
    attributes = 0x20 if control else 0
    after_length = struct.pack(">ibih", 0, 2, 0, attributes) + struct.pack(">iqqqhii", 0, 0, 0, -1, -1, -1, count)
    payload = after_length + body
    return struct.pack(">qi", 0, len(payload)) + payload


@pytest.mark.parametrize(
    ("batches", "records"),
    [([_batch(1)], 1), ([_batch(3), _batch(2)], 5), ([_batch(1), _batch(1, control=True)], 1), ([], 0)],
)
def test_segment_stats_counts_records_and_bytes(batches: list[bytes], records: int) -> None:
    data = b"".join(batches)
    assert segment_stats(data) == (records, len(data))


def test_segment_stats_refuses_what_is_not_a_v2_batch() -> None:
    with pytest.raises(ValueError, match="not a v2 record batch"):
        segment_stats(b"\x00" * 80)


@pytest.mark.parametrize("text", ["gateway=0.5", "gateway", "gateway=0.5,launch=0.6"])
def test_role_shares_must_be_fractions_adding_to_one(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="--role-shares"):
        scaling._parse_shares(text)
