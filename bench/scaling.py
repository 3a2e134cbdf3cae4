"""The plan for internet scale (100k runs per minute) from the per-run costs measured here: pure arithmetic.

    .venv/bin/python -m bench.scaling                       # the plan, from bench/results/*.json
    .venv/bin/python -m bench.scaling --runs-per-min 1000000 --broker-cpu-ms 3.7
    .venv/bin/python -m bench.scaling topics --log-dir ~/.local/share/aevatar-sandbox/kafka/logs --prefix P.

The plan reads the measured inputs from bench/results/cpu-per-run-latest.json (CPU per run:
platform, sandboxes, broker; written by `python -m bench.cpu_per_run`), bench/results/latest.json
(the floor and the stage latencies; `aevatar-sandbox bench`) and
bench/results/topic-bytes-latest.json (records and bytes per run per topic, written by the `topics`
subcommand from a broker's own segment files after n runs on a fresh prefix). Each can also be
given as a flag; without the files the defaults below are the measured values, named and dated.
Everything else is an assumption, a flag with a default, printed beside the plan. docs/scaling.md
explains each line. Standard library only, so that anyone can rerun it anywhere.
"""

from __future__ import annotations

import argparse
import json
import math
import struct
import sys
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
CPU_JSON = RESULTS / "cpu-per-run-latest.json"
BENCH_JSON = RESULTS / "latest.json"
TOPICS_JSON = RESULTS / "topic-bytes-latest.json"
DAY_S = 86_400

# The measured defaults (used when the JSON files are absent), with where and when they were measured.
# `python -m bench.cpu_per_run --n 200`, 2026-12-07T20:56:33Z, commit 689e907, 2 vCPUs at load 5.7.
MEASURED_CPU = {"platform_cpu_ms": 24.45, "sandboxes_cpu_ms": 22.2, "broker_cpu_ms": 29.65}
# `aevatar-sandbox bench`, 2026-11-29T06:43:28Z, commit db5d8f0: the floor, STARTED → terminal p50 (HTTP warm).
MEASURED_FLOOR_MS = 11.26
MEASURED_RUN_HOLD_MS = 9.0
MEASURED_COLD_HOLD_MS = 16.0  # STARTED → terminal p50 on a pool miss: what a warm sandbox's refill costs in wall time
# bench/README.md "Where the time goes" item 3: requests to the broker per run, counted over 200
# back-to-back HTTP runs, 2026-11-29 (the express result as one plain write).
MEASURED_BROKER_REQUESTS_PER_RUN = 16.06
# `python -m bench.scaling topics` over 200 HTTP hello worlds through `aevatar-sandbox up` on a
# fresh prefix, 2026-12-07T23:02Z, commit 7576c99: (records, bytes on the broker's log) per run.
MEASURED_TOPICS: dict[str, tuple[float, float]] = {
    "sandbox.requests": (1.0, 301.0),
    "sandbox.events": (7.0, 2204.0),
    "sandbox.logs": (1.0, 228.0),
    "sandbox.results": (1.0, 382.0),
    "sandbox.submissions": (1.0, 233.0),
    "aevatar-scheduling-queue-changelog": (4.0, 1520.83),
    "aevatar-validation-seen-ids-changelog": (1.0, 101.0),
}


@dataclass(frozen=True, slots=True)
class TopicFacts:
    """What streams/topics.py (and the processors) fix about a topic, for the arithmetic."""

    name: str
    retention_days: float | None  # None: kept for ever (compacted, a key per run or per transition)
    kept_records_per_run: float | None  # after compaction; None: every record is kept until retention
    readers_fixed: int  # consumer groups that read all of it
    read_by_each_gateway: bool = False  # every gateway replica reads all of it (the view)
    keyed_by_execution: bool = True


# streams/topics.py CATALOG (tests/bench/test_scaling.py checks the retentions against it).
# sandbox.events' key is "<execution_id>:<seq>": compaction drops only the SCHEDULED written twice
# (by the scheduler and again by the executor), so 6 of a run's 7 records stay for ever.
CATALOG_FACTS: tuple[TopicFacts, ...] = (
    TopicFacts("sandbox.requests", 7, None, readers_fixed=1),  # validation
    TopicFacts("sandbox.events", None, 6, readers_fixed=2, read_by_each_gateway=True),  # scheduling, completion
    TopicFacts("sandbox.launches", 7, None, readers_fixed=1),  # launch (executors)
    TopicFacts("sandbox.logs", 1, None, readers_fixed=0, read_by_each_gateway=True),
    TopicFacts("sandbox.results", None, 1, readers_fixed=2, read_by_each_gateway=True),  # webhooks, the client
    TopicFacts("sandbox.submissions", None, 1, readers_fixed=0),  # read back for a re-judge only
    TopicFacts("aevatar-scheduling-queue-changelog", 7, 1, readers_fixed=0),  # tombstoned after the dedupe window
    TopicFacts("aevatar-validation-seen-ids-changelog", 7, 1, readers_fixed=0),  # expires after the dedupe window
)


@dataclass(frozen=True, slots=True)
class Inputs:
    """The measured inputs: per run, on this machine."""

    platform_cpu_ms: float = MEASURED_CPU["platform_cpu_ms"]
    sandbox_cpu_ms: float = MEASURED_CPU["sandboxes_cpu_ms"]
    broker_cpu_ms: float = MEASURED_CPU["broker_cpu_ms"]
    floor_ms: float = MEASURED_FLOOR_MS
    run_hold_ms: float = MEASURED_RUN_HOLD_MS
    refill_ms: float = MEASURED_COLD_HOLD_MS
    broker_requests_per_run: float = MEASURED_BROKER_REQUESTS_PER_RUN
    topics: Mapping[str, tuple[float, float]] = field(default_factory=lambda: dict(MEASURED_TOPICS))
    sources: tuple[str, ...] = ("built-in measured defaults (see bench/scaling.py)",)


@dataclass(frozen=True, slots=True)
class Assumptions:
    """Not measured here: a production cluster's figures. Each is a flag."""

    runs_per_min: float = 100_000
    replication: int = 3
    partition_write_mib_s: float = 5.0  # what one partition is planned to take, well under a broker's limit
    member_utilization: float = 0.6  # a Python processor (one core at most: the GIL) planned at 60% busy
    role_shares: Mapping[str, float] = field(
        # The platform's CPU per run split across its roles: NOT measured per role (issue 25 point 1
        # measures the whole); an even split until it is.
        default_factory=lambda: {r: 0.2 for r in ("gateway", "validation", "scheduling", "launch", "completion")}
    )
    executor_cores_per_host: int = 32
    executor_utilization: float = 0.75
    broker_cores: int = 16
    broker_utilization: float = 0.6
    broker_disk_write_mib_s: float = 300.0
    broker_net_mib_s: float = 1000.0  # ~10 Gbit/s each way, planned at 80%
    headroom: float = 2.0  # partitions and slots for twice the rate (peaks, rebalances, a lost zone)
    launch_record_bytes: float | None = None  # sandbox.launches per run when not measured: a mean events record
    forever_horizon_days: float = 30  # how far the plan sizes the topics kept for ever
    max_replicas_per_broker: int = 4000


@dataclass(frozen=True, slots=True)
class TopicPlan:
    name: str
    records_per_s: float
    bytes_per_s: float
    partitions_for_bytes: int
    retained_bytes: float  # all replicas, at retention (or at the horizon when kept for ever)
    retention: str
    egress_bytes_per_s: float
    measured: bool


@dataclass(frozen=True, slots=True)
class Plan:
    runs_per_s: float
    topics: tuple[TopicPlan, ...]
    members: dict[str, int]
    partitions: int
    executor_cores: float
    executor_hosts: int
    slots_per_host: int
    warm_pool_per_host: int
    broker_cores: float
    broker_requests_per_s: float
    ingress_bytes_per_s: float
    disk_write_bytes_per_s: float
    egress_bytes_per_s: float
    brokers: int
    brokers_by: dict[str, int]
    retained_bytes: float


def ceil_div(a: float, b: float) -> int:
    """ceil(a / b), never below 0; a tiny epsilon keeps 3.0000000001 at 3."""
    return max(0, math.ceil(a / b - 1e-9))


def round_up(n: int, multiple: int) -> int:
    return ceil_div(n, multiple) * multiple


def members_needed(runs_per_s: float, cpu_ms_per_run: float, utilization: float) -> int:
    """Single-core processes (consumer-group members) that carry runs_per_s at this CPU per run."""
    return max(1, ceil_div(runs_per_s * cpu_ms_per_run / 1000, utilization))


def topic_loads(inputs: Inputs, a: Assumptions) -> list[tuple[TopicFacts, float, float, bool]]:
    """(facts, records per run, bytes per run, measured) for each topic of the plan."""
    events = inputs.topics.get("sandbox.events", (7.0, 2204.0))
    mean_event = events[1] / events[0] if events[0] else 0.0
    out = []
    for facts in CATALOG_FACTS:
        if facts.name in inputs.topics:
            records, size = inputs.topics[facts.name]
            out.append((facts, records, size, True))
        elif facts.name == "sandbox.launches":
            # In one process (`up`, the bench) the express lane hands SCHEDULED to the executor in
            # memory; split across hosts it is one record on sandbox.launches per run.
            out.append((facts, 1.0, a.launch_record_bytes or mean_event, False))
        else:
            out.append((facts, 0.0, 0.0, False))
    return out


def plan(inputs: Inputs, a: Assumptions, gateways: int | None = None) -> Plan:
    rate = a.runs_per_min / 60
    shares = a.role_shares
    members = {
        role: members_needed(rate, inputs.platform_cpu_ms * share, a.member_utilization)
        for role, share in shares.items()
    }
    g = gateways if gateways is not None else members.get("gateway", 1)

    # Executors: CPU per run is the sandbox's plus the launch role's own.
    executor_cores = rate * (inputs.sandbox_cpu_ms + inputs.platform_cpu_ms * shares.get("launch", 0.0)) / 1000
    hosts = max(1, ceil_div(executor_cores, a.executor_cores_per_host * a.executor_utilization))
    per_host_rate = rate / hosts
    # Little's law: runs in a slot at once = rate x time held; at least one slot per core.
    slots_per_host = max(a.executor_cores_per_host, math.ceil(per_host_rate * inputs.run_hold_ms / 1000 * a.headroom))
    warm_pool = math.ceil(per_host_rate * inputs.refill_ms / 1000 * a.headroom) + 1
    # One launch consumer per executor host: launches needs at least that many partitions.
    members["launch"] = max(members.get("launch", 1), hosts)

    topics: list[TopicPlan] = []
    part_bytes = a.partition_write_mib_s * 2**20
    for facts, records, size, measured in topic_loads(inputs, a):
        bps = rate * size
        readers = facts.readers_fixed + (g if facts.read_by_each_gateway else 0)
        kept_per_run = (
            size
            if facts.kept_records_per_run is None or not records
            else size * min(1.0, facts.kept_records_per_run / records)
        )
        days = facts.retention_days if facts.retention_days is not None else a.forever_horizon_days
        retained = rate * kept_per_run * days * DAY_S * a.replication
        retention = f"{days:g} d" if facts.retention_days is not None else f"for ever ({days:g} d shown)"
        topics.append(
            TopicPlan(
                facts.name, rate * records, bps, ceil_div(bps, part_bytes), retained, retention, bps * readers, measured
            )
        )

    ingress = sum(t.bytes_per_s for t in topics)
    disk = ingress * a.replication
    egress = sum(t.egress_bytes_per_s for t in topics) + ingress * (a.replication - 1)
    # The broker CPU per run was measured at replication 1; each replica is counted as a leader's cost (an upper bound).
    broker_cores = rate * inputs.broker_cpu_ms / 1000 * a.replication
    need = max([*members.values(), *(t.partitions_for_bytes for t in topics)])
    brokers_by = {
        "replication": a.replication,
        "cpu": ceil_div(broker_cores, a.broker_cores * a.broker_utilization),
        "disk write": ceil_div(disk, a.broker_disk_write_mib_s * 2**20),
        "network": ceil_div(max(ingress * a.replication, egress), a.broker_net_mib_s * 0.8 * 2**20),
    }
    brokers = max(brokers_by.values())
    partitions = round_up(max(12, math.ceil(need * a.headroom)), brokers)
    replicas = partitions * len(CATALOG_FACTS) * a.replication
    brokers_by["partition replicas"] = ceil_div(replicas, a.max_replicas_per_broker)
    brokers = max(brokers_by.values())
    partitions = round_up(partitions, brokers)
    return Plan(
        runs_per_s=rate,
        topics=tuple(topics),
        members={**members, "gateway": g},
        partitions=partitions,
        executor_cores=executor_cores,
        executor_hosts=hosts,
        slots_per_host=slots_per_host,
        warm_pool_per_host=warm_pool,
        broker_cores=broker_cores,
        broker_requests_per_s=rate * inputs.broker_requests_per_run,
        ingress_bytes_per_s=ingress,
        disk_write_bytes_per_s=disk,
        egress_bytes_per_s=egress,
        brokers=brokers,
        brokers_by=brokers_by,
        retained_bytes=sum(t.retained_bytes for t in topics),
    )


# --- reading the measurements -------------------------------------------------------------------


def load_inputs(cpu_json: Path = CPU_JSON, bench_json: Path = BENCH_JSON, topics_json: Path = TOPICS_JSON) -> Inputs:
    """The measured inputs from the bench's JSON files where present, else the dated defaults."""
    inputs = Inputs()
    sources = []
    if cpu_json.exists():
        d = json.loads(cpu_json.read_text())
        per = d["per_run"]
        inputs = replace(
            inputs,
            platform_cpu_ms=per["platform_cpu_ms"],
            sandbox_cpu_ms=per["sandboxes_cpu_ms"],
            broker_cpu_ms=per["broker_cpu_ms"],
        )
        sources.append(f"{cpu_json.name} ({d.get('measured_at', '?')}, {d.get('commit', '?')})")
    if bench_json.exists():
        d = json.loads(bench_json.read_text())
        hops = d.get("stages", {})
        warm = hops.get("HTTP sequential, warm", {}).get("STARTED → terminal (its ack, then the backend's run)", {})
        cold = hops.get("HTTP sequential, cold (pool miss)", {}).get(
            "STARTED → terminal (its ack, then the backend's run)", {}
        )
        inputs = replace(
            inputs,
            floor_ms=d.get("floor", {}).get("bwrap", {}).get("p50_ms", inputs.floor_ms),
            run_hold_ms=warm.get("p50_ms", inputs.run_hold_ms),
            refill_ms=cold.get("p50_ms", inputs.refill_ms),
        )
        sources.append(f"{bench_json.name} ({d.get('started_at', '?')})")
    if topics_json.exists():
        d = json.loads(topics_json.read_text())
        measured = {name: (t["records_per_run"], t["bytes_per_run"]) for name, t in d["topics"].items()}
        inputs = replace(inputs, topics=measured)
        sources.append(
            f"{topics_json.name} ({d.get('measured_at', '?')}, {d.get('commit', '?')}, {d.get('runs')} runs)"
        )
    return replace(inputs, sources=tuple(sources) or inputs.sources)


def _varint(data: bytes, i: int) -> tuple[int, int]:
    shift = raw = 0
    while True:
        byte = data[i]
        i += 1
        raw |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return (raw >> 1) ^ -(raw & 1), i


def segment_stats(data: bytes) -> tuple[int, int]:
    """(records, bytes) of a Kafka log segment (record batches v2); control batches (transaction markers) count
    as bytes, not records."""
    records = size = 0
    i = 0
    while i + 61 <= len(data):
        batch_length = struct.unpack_from(">i", data, i + 8)[0]
        if batch_length <= 0 or data[i + 16] != 2:
            raise ValueError(f"not a v2 record batch at byte {i}")
        attributes = struct.unpack_from(">h", data, i + 21)[0]
        if not attributes & 0x20:
            records += struct.unpack_from(">i", data, i + 57)[0]
        size += 12 + batch_length
        i += 12 + batch_length
    return records, size


def measure_topics(log_dir: Path, prefix: str) -> dict[str, dict[str, float]]:
    """Records and bytes per topic of one prefix in a broker's log dir, and per run (runs: sandbox.results' records)."""
    totals: dict[str, list[int]] = {}
    for part in sorted(log_dir.glob(f"{prefix}*")):
        topic = part.name.rsplit("-", 1)[0][len(prefix) :]
        acc = totals.setdefault(topic, [0, 0])
        for segment in part.glob("*.log"):
            records, size = segment_stats(segment.read_bytes())
            acc[0] += records
            acc[1] += size
    runs = totals.get("sandbox.results", [0, 0])[0]
    if not runs:
        raise SystemExit(f"no records in {prefix}sandbox.results under {log_dir}: nothing to divide by")
    return {
        topic: {"records": r, "bytes": b, "records_per_run": r / runs, "bytes_per_run": round(b / runs, 2)}
        for topic, (r, b) in sorted(totals.items())
        if r
    }


# --- the table ------------------------------------------------------------------------------------


def _mib(n: float) -> str:
    return f"{n / 2**20:,.2f}"


def _size(n: float) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n / 1024:,.1f} KiB"


def render(inputs: Inputs, a: Assumptions, p: Plan) -> str:
    lines = [
        f"# Plan for {a.runs_per_min:,.0f} runs/min = {p.runs_per_s:,.1f} runs/s",
        "",
        "measured inputs (per run): " + "; ".join(inputs.sources),
        f"  platform CPU {inputs.platform_cpu_ms} ms, sandbox CPU {inputs.sandbox_cpu_ms} ms, broker CPU "
        f"{inputs.broker_cpu_ms} ms, broker requests {inputs.broker_requests_per_run}, floor {inputs.floor_ms} ms, "
        f"slot held {inputs.run_hold_ms} ms, refill {inputs.refill_ms} ms",
        f"assumptions: replication {a.replication}, {a.partition_write_mib_s} MiB/s per partition, members at "
        f"{a.member_utilization:.0%}, role shares {dict(a.role_shares)}, "
        f"executor host {a.executor_cores_per_host} cores "
        f"at {a.executor_utilization:.0%}, broker {a.broker_cores} cores at {a.broker_utilization:.0%}, "
        f"{a.broker_disk_write_mib_s} MiB/s disk, {a.broker_net_mib_s} MiB/s network, headroom x{a.headroom}",
        "",
        "| topic | records/s | MiB/s in | MiB/s out (readers) | partitions for bytes | retention | retained (x RF) |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for t in p.topics:
        mark = "" if t.measured else " (assumed)"
        lines.append(
            f"| {t.name}{mark} | {t.records_per_s:,.0f} | {_mib(t.bytes_per_s)} | {_mib(t.egress_bytes_per_s)} | "
            f"{t.partitions_for_bytes} | {t.retention} | {_size(t.retained_bytes)} |"
        )
    lines += [
        "",
        "| what | value | from |",
        "|---|---:|---|",
        *(
            f"| {role} members (single-core processes) | {n} | runs/s x platform CPU x share / utilization"
            + (", and one per executor host" if role == "launch" else "")
            + " |"
            for role, n in p.members.items()
        ),
        f"| partitions, every execution-keyed topic (co-partitioned) | {p.partitions} | "
        "max(members, bytes) x headroom, "
        "a multiple of the brokers |",
        f"| executor cores busy | {p.executor_cores:,.1f} | runs/s x (sandbox CPU + launch share) |",
        f"| executor hosts | {p.executor_hosts} | cores / (cores per host x utilization) |",
        f"| slots per host | {p.slots_per_host} | max(cores, runs/s per host x slot held x headroom) |",
        f"| warm sandboxes per host and language | {p.warm_pool_per_host} | runs/s per host x refill x headroom + 1 |",
        f"| broker requests/s | {p.broker_requests_per_s:,.0f} | "
        "runs/s x requests per run (no batching: an upper bound) |",
        f"| broker ingress, leaders | {_mib(p.ingress_bytes_per_s)} MiB/s | sum of the topics |",
        f"| broker disk writes, all replicas | {_mib(p.disk_write_bytes_per_s)} MiB/s | ingress x RF |",
        f"| broker egress (replicas + readers) | {_mib(p.egress_bytes_per_s)} MiB/s | ingress x (RF-1) + readers |",
        f"| broker cores busy | {p.broker_cores:,.1f} | runs/s x broker CPU x RF (each replica as a leader) |",
        f"| brokers | {p.brokers} | max of {', '.join(f'{k} {v}' for k, v in p.brokers_by.items())} |",
        f"| retained on disk, all topics and replicas | {_size(p.retained_bytes)} | per topic above |",
    ]
    return "\n".join(lines)


def _parse_shares(text: str) -> dict[str, float]:
    shares = {}
    for part in text.split(","):
        role, _, value = part.partition("=")
        if not value:
            raise argparse.ArgumentTypeError(f"--role-shares: {part!r} is not role=fraction")
        shares[role.strip()] = float(value)
    if abs(sum(shares.values()) - 1.0) > 0.01:
        raise argparse.ArgumentTypeError(f"--role-shares: the shares add up to {sum(shares.values()):.2f}, not 1")
    return shares


def main(argv: Iterable[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["topics"]:
        return _main_topics(args_list[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    d_inputs = load_inputs()
    d = Assumptions()
    parser.add_argument("--runs-per-min", type=float, default=d.runs_per_min)
    for name in (
        "platform_cpu_ms",
        "sandbox_cpu_ms",
        "broker_cpu_ms",
        "run_hold_ms",
        "refill_ms",
        "broker_requests_per_run",
    ):
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(d_inputs, name), help="measured")
    for name in (
        "partition_write_mib_s",
        "member_utilization",
        "executor_utilization",
        "broker_utilization",
        "broker_disk_write_mib_s",
        "broker_net_mib_s",
        "headroom",
        "forever_horizon_days",
    ):
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(d, name), help="assumed")
    for name in ("replication", "executor_cores_per_host", "broker_cores"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(d, name), help="assumed")
    parser.add_argument("--role-shares", type=_parse_shares, default=dict(d.role_shares), help="role=fraction,...")
    parser.add_argument("--gateways", type=int, default=None, help="gateway replicas (default: from the gateway share)")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON instead of the table")
    args = parser.parse_args(args_list)
    for name in ("runs_per_min", "member_utilization", "executor_utilization", "broker_utilization", "headroom"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0")
    inputs = replace(
        d_inputs,
        **{
            n: getattr(args, n)
            for n in (
                "platform_cpu_ms",
                "sandbox_cpu_ms",
                "broker_cpu_ms",
                "run_hold_ms",
                "refill_ms",
                "broker_requests_per_run",
            )
        },
    )
    assumptions = replace(
        d,
        runs_per_min=args.runs_per_min,
        replication=args.replication,
        partition_write_mib_s=args.partition_write_mib_s,
        member_utilization=args.member_utilization,
        role_shares=args.role_shares,
        executor_cores_per_host=args.executor_cores_per_host,
        executor_utilization=args.executor_utilization,
        broker_cores=args.broker_cores,
        broker_utilization=args.broker_utilization,
        broker_disk_write_mib_s=args.broker_disk_write_mib_s,
        broker_net_mib_s=args.broker_net_mib_s,
        headroom=args.headroom,
        forever_horizon_days=args.forever_horizon_days,
    )
    result = plan(inputs, assumptions, gateways=args.gateways)
    if args.json:
        print(json.dumps(asdict(result), indent=2))
    else:
        print(render(inputs, assumptions, result))
    return 0


def _main_topics(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scaling topics",
        description="records and bytes per run per topic, from a broker's segment files after n runs on a fresh prefix",
    )
    parser.add_argument("--log-dir", type=Path, required=True, help="the broker's log.dirs")
    parser.add_argument("--prefix", required=True, help="the topic prefix the runs used, e.g. scaling1234abcd.")
    parser.add_argument("--commit", default="", help="the commit the runs ran on")
    parser.add_argument("--out", type=Path, default=TOPICS_JSON)
    args = parser.parse_args(argv)
    topics = measure_topics(args.log_dir.expanduser(), args.prefix)
    doc = {
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": args.commit,
        "prefix": args.prefix,
        "runs": int(topics["sandbox.results"]["records"]),
        "topics": topics,
    }
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    for name, t in topics.items():
        print(f"{name}: {t['records_per_run']:.2f} records, {t['bytes_per_run']:.1f} bytes per run")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
