"""The platform's memory with the gateway view's bounds and without them, in one run.

    .venv/bin/python -m bench.view_memory [--n 100]

The gateway keeps finished executions in its view within a retention (gateway/view.py: age, count,
output bytes; AEVATAR_VIEW_MAX_OUTPUT_MIB 64 by default). This starts the bench's platform
(`python -m bench.platform`: every processor, the executor, the gateway) twice on the same broker,
once with the default bounds and once with the bounds out of reach (AEVATAR_VIEW_MAX_OUTPUT_MIB and
AEVATAR_VIEW_MAX_EXECUTIONS huge: every output kept, as before the bounds existed), and sends each
2n runs through HTTP (`?wait=true`) that print 1 MB to stdout and 1 MB to stderr. The platform
process's RSS (MiB, VmRSS) at rest, after n and after 2n. Writes bench/results/view-memory-latest.json.
Needs root; starts the managed broker if none runs (and stops it again).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from bench.harness import BenchConfig, Platform, free_uid_base, tree_rss_mib
from streams.broker import ManagedBroker
from streams.settings import Settings
from streams.topics import create_topics, delete_prefixed_topics

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "view-memory-latest.json"
CODE = "import sys\nsys.stdout.write('o' * 1_000_000)\nsys.stderr.write('e' * 1_000_000)\n"
UNBOUNDED = {"AEVATAR_VIEW_MAX_OUTPUT_MIB": "1000000", "AEVATAR_VIEW_MAX_EXECUTIONS": "100000000"}


async def one_platform(base: Settings, label: str, env: dict[str, str], n: int, port: int) -> dict[str, float]:
    settings = replace(base, topic_prefix=f"benchview{uuid.uuid4().hex[:8]}.", partitions=2)
    await create_topics(settings)
    cfg = BenchConfig(port=port, uid_base=free_uid_base(66_500, base.sandbox_state_dir), executor_slots=2)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # Platform passes the environment on
    log_path = Path(f"/tmp/aevatar-bench-view-{label}-{os.getpid()}.log")
    try:
        platform = Platform(settings, cfg, log_path)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    url = f"http://127.0.0.1:{port}"
    out: dict[str, float] = {}
    try:
        await platform.wait_ready(url)
        await asyncio.sleep(5)  # the warm pool fills
        out["at_rest_mib"] = round(tree_rss_mib(platform.proc.pid)[0], 1)
        body = {"language": "python", "code": CODE, "limits": {"output_bytes": 2_097_152}}
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            for i in range(2 * n):
                response = await client.post("/v1/executions?wait=true", json=body)
                got = response.json()
                if response.status_code != 200 or got.get("state") != "SUCCEEDED" or len(got["stdout"]) != 1_000_000:
                    raise RuntimeError(f"{label} run {i}: {response.status_code} {str(got)[:300]}")
                if i + 1 in (n, 2 * n):
                    out[f"after_{i + 1}_mib"] = round(tree_rss_mib(platform.proc.pid)[0], 1)
        print(f"[view_memory] {label}: {out}", file=sys.stderr)
    finally:
        platform.stop()
        await delete_prefixed_topics(settings)
    return out


async def main(n: int) -> dict[str, Any]:
    base = Settings.from_env()
    broker = ManagedBroker(base)
    started = False
    if base.managed_kafka:
        _, started = await asyncio.to_thread(broker.start)
    try:
        bounded = await one_platform(base, "bounded", {}, n, 18_490)
        unbounded = await one_platform(base, "unbounded", UNBOUNDED, n, 18_492)
    finally:
        if started:
            await asyncio.to_thread(broker.stop)
    return {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "n": n,
        "platform_rss": {"bounded (defaults)": bounded, "unbounded (bounds out of reach)": unbounded},
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="runs before the second sample (2n in all)")
    n = parser.parse_args().n
    result = asyncio.run(main(n))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'platform RSS (MiB)':<34}{'at rest':>9}{f'after {n}':>11}{f'after {2 * n}':>11}")
    for label, got in result["platform_rss"].items():
        print(f"{label:<34}{got['at_rest_mib']:>9}{got[f'after_{n}_mib']:>11}{got[f'after_{2 * n}_mib']:>11}")
    print(f"one run of each, same broker; {RESULTS}")
