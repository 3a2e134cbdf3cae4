"""How fast the local backend ends a run at its limits, against a hello world in the same run.

    .venv/bin/python -m bench.limits [--n 10]

The runtime tests assert what happens at a limit (which limit, that the run was stopped there, the
exact outcome), with bounds that hold on a loaded machine; the speed is measured here. Straight
through a real local backend's `run` (no pipeline, warm pool off, one slot), the cases interleaved
round by round so that the machine's load falls on each alike, n rounds:

- hello world (`print('hello')`): the baseline, its `run_ms`;
- an ordinary run that prints to both streams and exits 3: `run_ms`;
- a CPU spin with a 500 ms CPU limit: `cpu_time_ms` past the limit (the kill's overshoot) and `run_ms`;
- a sleep with a 700 ms wall limit: `run_ms` past the limit (the kill's latency);
- reading stdin to EOF (none given), then `input()`: `run_ms` (EOF at once, not a hang);
- a double-forked orphan that sleeps while its parent exits: `run_ms` (the run ends with its main process).

Medians, and each case's median over the hello world's. Writes bench/results/limits-latest.json.
Needs root.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "limits-latest.json"
UID_BASE = 66_850  # one slot; bench.favordynmods uses 66800, the harness 66500+, bench.kubernetes 66900

ORPHAN = (
    "import os, time\n"
    "if os.fork() == 0:\n"
    "    if os.fork() == 0:\n"
    "        time.sleep(600)\n"
    "    os._exit(0)\n"
    "os.wait()\n"
    "print('parent done', flush=True)\n"
)
# name -> (code, limit overrides, the state it must end in)
CASES: dict[str, tuple[str, dict[str, int], str]] = {
    "hello": ("print('hello')", {}, "SUCCEEDED"),
    "ordinary_exit_3": ("import sys\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(3)", {}, "FAILED"),
    "cpu_limit_500ms": ("while True: pass", {"cpu_time_ms": 500, "wall_time_ms": 20_000}, "LIMIT_EXCEEDED"),
    "wall_limit_700ms": ("import time; time.sleep(120)", {"wall_time_ms": 700}, "LIMIT_EXCEEDED"),
    "stdin_eof": ("import sys\nsys.stdin.buffer.read()\ninput()", {"wall_time_ms": 30_000}, "FAILED"),
    "orphan_left_behind": (ORPHAN, {"wall_time_ms": 30_000}, "SUCCEEDED"),
}


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 2)


async def main(n: int) -> dict[str, Any]:
    from processors.runner import default_backend
    from runtime.types import Limits, RunRequest
    from streams.settings import Settings

    base = Limits(wall_time_ms=2000, cpu_time_ms=1000, memory_mib=64, processes=32, output_bytes=65_536, disk_mib=8)
    samples: dict[str, dict[str, list[float]]] = {name: {"run_ms": [], "cpu_time_ms": []} for name in CASES}
    with tempfile.TemporaryDirectory(prefix="aevatar-bench-limits-") as state:
        os.chmod(state, 0o755)
        settings = replace(
            Settings.from_env(),
            warm_pool_size=0,
            executor_slots=1,
            sandbox_uid_base=UID_BASE,
            sandbox_state_dir=Path(state),
        )
        backend = default_backend(settings)
        try:
            await backend.run(RunRequest(f"limits-{os.getpid()}-warmup", "python", "print(1)"))
            for r in range(n):
                for name, (code, overrides, expected) in CASES.items():
                    request = RunRequest(
                        f"limits-{os.getpid()}-{r}-{name}", "python", code, limits=replace(base, **overrides)
                    )
                    outcome = await backend.run(request)
                    if outcome.state.value != expected:
                        raise RuntimeError(f"{name}: {outcome.state} (expected {expected}): {outcome.stderr[-300:]!r}")
                    samples[name]["run_ms"].append(outcome.run_ms)
                    samples[name]["cpu_time_ms"].append(outcome.cpu_time_ms)
                print(f"[limits] round {r + 1}/{n} done", file=sys.stderr)
        finally:
            await backend.close()
    hello = _median(samples["hello"]["run_ms"])
    result: dict[str, Any] = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "rounds": n,
        "cases": {},
    }
    for name, got in samples.items():
        run = _median(got["run_ms"])
        entry: dict[str, float] = {"run_ms_p50": run, "cpu_time_ms_p50": _median(got["cpu_time_ms"])}
        entry["x_hello_run_ms"] = round(run / hello, 2) if hello else float("nan")
        if name == "cpu_limit_500ms":
            entry["cpu_past_limit_ms_p50"] = _median([c - 500 for c in got["cpu_time_ms"]])
        if name == "wall_limit_700ms":
            entry["run_past_limit_ms_p50"] = _median([w - 700 for w in got["run_ms"]])
        result["cases"][name] = entry
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10, help="rounds (each case once per round)")
    out = asyncio.run(main(parser.parse_args().n))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"{'case':<22}{'run_ms p50':>12}{'cpu_ms p50':>12}{'x hello':>9}  past the limit")
    for name, entry in out["cases"].items():
        past = entry.get("cpu_past_limit_ms_p50", entry.get("run_past_limit_ms_p50", ""))
        run, cpu, ratio = entry["run_ms_p50"], entry["cpu_time_ms_p50"], entry["x_hello_run_ms"]
        print(f"{name:<22}{run:>12.1f}{cpu:>12.1f}{ratio:>9.2f}  {past}")
    print(f"medians over {out['rounds']} rounds; {RESULTS}")
