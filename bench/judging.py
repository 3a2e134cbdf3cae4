"""A judged submission of 20 cases against 20 single runs of the same program, through the platform.

    .venv/bin/python -m bench.judging [--rounds 5]

Starts the whole platform (`python -m bench.platform`: every processor, one executor of 4 slots, the
gateway) on the managed broker. Each round takes a fresh C program (a new comment: a compile-cache
miss, as a new submission is) and, in alternating order:
- judged: one POST /v1/executions?wait=true carrying the 20 cases (compiled once, the cases in fresh
  sandboxes at most AEVATAR_TENANT_QUOTA = 4 at a time), timed from the POST to its answer;
- singles: 20 POST /v1/executions?wait=true of the same program, one per case's stdin, sent at once,
  timed from the first POST to the last answer (the compile cache serves whichever compile lands first).
Every answer is checked (20 ACCEPTED; each single's stdout). Medians (p50) over the rounds, and their
ratio. Writes bench/results/judging-latest.json. Needs root and gcc.
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
RESULTS = REPO / "bench" / "results" / "judging-latest.json"
PORT = 18_494
CASES = 20
SLOTS = 4
PROGRAM = """#include <stdio.h>
int main(void) {
    long a, b;
    if (scanf("%ld %ld", &a, &b) != 2) return 2;
    printf("%ld\\n", a * b + 1);
    return 0;
}
"""


def program() -> str:
    return f"{PROGRAM}/* bench.judging {uuid.uuid4().hex} */\n"


def cases() -> list[dict[str, str]]:
    return [{"stdin": f"{i} {i + 3}\n", "expected_stdout": f"{i * (i + 3) + 1}\n"} for i in range(CASES)]


async def judged(client: httpx.AsyncClient, code: str) -> float:
    began = time.perf_counter()
    response = await client.post("/v1/executions?wait=true", json={"language": "c", "code": code, "tests": cases()})
    elapsed_ms = (time.perf_counter() - began) * 1000
    got = response.json()
    judgement = got.get("judgement") or {}
    if response.status_code != 200 or judgement.get("passed") != CASES:
        raise RuntimeError(f"judged: {response.status_code} {str(got)[:300]}")
    return elapsed_ms


async def singles(client: httpx.AsyncClient, code: str) -> float:
    async def one(case: dict[str, str]) -> None:
        body = {"language": "c", "code": code, "stdin": case["stdin"]}
        response = await client.post("/v1/executions?wait=true", json=body)
        got = response.json()
        if response.status_code != 200 or got.get("stdout") != case["expected_stdout"]:
            raise RuntimeError(f"single: {response.status_code} {str(got)[:300]}")

    began = time.perf_counter()
    await asyncio.gather(*(one(c) for c in cases()))
    return (time.perf_counter() - began) * 1000


async def measure(base: Settings, rounds: int) -> dict[str, list[float]]:
    settings = replace(base, topic_prefix=f"benchjudge{uuid.uuid4().hex[:8]}.", partitions=2)
    await create_topics(settings)
    cfg = BenchConfig(port=PORT, uid_base=free_uid_base(66_500, base.sandbox_state_dir), executor_slots=SLOTS)
    platform = Platform(settings, cfg, Path(f"/tmp/aevatar-bench-judging-{os.getpid()}.log"))
    url = f"http://127.0.0.1:{PORT}"
    out: dict[str, list[float]] = {"judged_ms": [], "singles_ms": []}
    try:
        await platform.wait_ready(url)
        await asyncio.sleep(3)  # the warm pool fills
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=url, timeout=180, limits=limits) as client:
            await judged(client, program())  # warm-up, not counted
            await singles(client, program())
            for r in range(rounds):
                order = (judged, singles) if r % 2 == 0 else (singles, judged)
                for mode in order:
                    ms = await mode(client, program())
                    out[f"{mode.__name__}_ms"].append(round(ms, 1))
                print(f"[judging] round {r + 1}: judged {out['judged_ms'][-1]:.0f} ms, "
                      f"20 singles {out['singles_ms'][-1]:.0f} ms", file=sys.stderr)  # fmt: skip
    finally:
        platform.stop()
        await delete_prefixed_topics(settings)
    return out


async def main(rounds: int) -> dict[str, Any]:
    base = Settings.from_env()
    broker = ManagedBroker(base)
    started = False
    if base.managed_kafka:
        _, started = await asyncio.to_thread(broker.start)
    try:
        samples = await measure(base, rounds)
    finally:
        if started:
            await asyncio.to_thread(broker.stop)
    p50_judged = statistics.median(samples["judged_ms"])
    p50_singles = statistics.median(samples["singles_ms"])
    return {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "rounds": rounds,
        "cases": CASES,
        "executor_slots": SLOTS,
        "samples": samples,
        "p50_judged_ms": round(p50_judged, 1),
        "p50_singles_ms": round(p50_singles, 1),
        "judged_over_singles": round(p50_judged / p50_singles, 3),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each kind (medians over them)")
    result = asyncio.run(main(parser.parse_args().rounds))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"judged submission of {CASES} C cases: p50 {result['p50_judged_ms']:.0f} ms; "
        f"{CASES} single runs of the same program: p50 {result['p50_singles_ms']:.0f} ms; "
        f"ratio {result['judged_over_singles']:.2f} ({result['rounds']} rounds, same run); {RESULTS}"
    )
