"""Where the CPU of a run goes: the platform, its sandboxes and the broker, per sequential HTTP run.

    .venv/bin/python -m bench.cpu_per_run [--n 200]

The bench's platform (`python -m bench.platform`: every processor, the executor with its warm pool,
the gateway) on a fresh topic prefix, n Python hello worlds through HTTP (`?wait=true`) one after
another after `--warmup` (100) not counted. From /proc, over the n runs: the platform process's own CPU
(utime + stime), its sandboxes' (the platform's cutime + cstime: every sandbox is its child or
comes back to it to be reaped, so its CPU lands there once reaped; the warm pool's refill is in it),
the broker JVM's (utime + stime), and how busy the machine's cores were (/proc/stat; other work on
the machine included). Per run: each divided by n; and the latency's p50. Writes
bench/results/cpu-per-run-latest.json. Needs root; starts the managed broker if none runs (and
stops it again).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from bench.harness import BenchConfig, Platform, free_uid_base
from streams.broker import ManagedBroker
from streams.settings import Settings
from streams.topics import create_topics, delete_prefixed_topics

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "cpu-per-run-latest.json"
TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> tuple[float, float]:
    """(own utime + stime, reaped children's cutime + cstime) of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime) * TICK_S, (cutime + cstime) * TICK_S


def machine_busy_idle_s() -> tuple[float, float]:
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) * TICK_S, idle * TICK_S


async def main(n: int, warmup: int) -> dict[str, Any]:
    base = Settings.from_env()
    broker = ManagedBroker(base)
    started = False
    if base.managed_kafka:
        _, started = await asyncio.to_thread(broker.start)
    broker_pid = broker.status().pid
    settings = replace(base, topic_prefix=f"benchcpu{uuid.uuid4().hex[:8]}.", partitions=4)
    await create_topics(settings)
    cfg = BenchConfig(port=18_494, uid_base=free_uid_base(66_500, base.sandbox_state_dir))
    platform = Platform(settings, cfg, Path(f"/tmp/aevatar-bench-cpu-{os.getpid()}.log"))
    url = f"http://127.0.0.1:{cfg.port}"
    body = {"language": "python", "code": "print('hello')"}
    latencies_ms: list[float] = []
    try:
        await platform.wait_ready(url)
        await asyncio.sleep(5)  # the warm pool fills
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:

            async def one() -> float:
                began = time.perf_counter()
                response = await client.post("/v1/executions?wait=true", json=body)
                if response.status_code != 200 or response.json().get("stdout") != "hello\n":
                    raise RuntimeError(f"{response.status_code} {response.text[:300]}")
                return (time.perf_counter() - began) * 1000

            for _ in range(warmup):  # the JVM's JIT and the platform's caches settle
                await one()
            own0, kids0 = cpu_s(platform.proc.pid)
            broker0 = sum(cpu_s(broker_pid)) if broker_pid else 0.0
            busy0, idle0 = machine_busy_idle_s()
            wall0 = time.perf_counter()
            for _ in range(n):
                latencies_ms.append(await one())
            wall_s = time.perf_counter() - wall0
            own1, kids1 = cpu_s(platform.proc.pid)
            broker1 = sum(cpu_s(broker_pid)) if broker_pid else 0.0
            busy1, idle1 = machine_busy_idle_s()
    finally:
        platform.stop()
        await delete_prefixed_topics(settings)
        if started:
            await asyncio.to_thread(broker.stop)
    per_run = {
        "platform_cpu_ms": round((own1 - own0) * 1000 / n, 2),
        "sandboxes_cpu_ms": round((kids1 - kids0) * 1000 / n, 2),
        "broker_cpu_ms": round((broker1 - broker0) * 1000 / n, 2) if broker_pid else None,
        "wall_ms": round(wall_s * 1000 / n, 2),
    }
    busy, idle = busy1 - busy0, idle1 - idle0
    return {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "n": n,
        "warmup": warmup,
        "cpus": os.cpu_count(),
        "per_run": per_run,
        "latency_p50_ms": round(statistics.median(latencies_ms), 2),
        "machine_busy_fraction": round(busy / (busy + idle), 3) if busy + idle else None,
        "load_avg_at_end": list(os.getloadavg()),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="sequential HTTP runs measured")
    parser.add_argument("--warmup", type=int, default=100, help="runs before, not counted")
    args = parser.parse_args()
    result = asyncio.run(main(args.n, args.warmup))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    per = result["per_run"]
    print(
        f"per run ({result['n']} sequential HTTP hello worlds, p50 {result['latency_p50_ms']} ms, every"
        f" {per['wall_ms']} ms): platform {per['platform_cpu_ms']} ms CPU, sandboxes {per['sandboxes_cpu_ms']} ms,"
        f" broker {per['broker_cpu_ms']} ms; the machine's {result['cpus']} cores"
        f" {100 * (result['machine_busy_fraction'] or 0):.0f}% busy (other work included); {RESULTS}",
        file=sys.stdout,
    )
