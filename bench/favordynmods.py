"""cgroup2 `favordynmods`, measured with and without in one run: what the opt-in buys and what it costs.

    .venv/bin/python -m bench.favordynmods [--rounds 6] [--n 20]

The local backend can remount every cgroup2 hierarchy with favordynmods
(`AEVATAR_SANDBOX_CGROUP_FAVOR_DYNMODS=1`, off by default: a host-wide change). This bench toggles
the flag itself (root), in alternating rounds (off, on, off, on, ...) so that the machine's other
load falls on both sides alike, and measures in each round:

- the mechanism: moving a sleeping process into a fresh cgroup2 cgroup (`cgroup.procs` write), n times;
- the cost the kernel docs name: a fork + exit + wait of this process, n times;
- the effect: n sequential Python hello worlds on a real local backend (cold: no warm pool; each run
  moves its sandbox into the run's cgroups), wall time of `backend.run`.

It reports each side's median over every round and the ratio on/off, writes
bench/results/favordynmods-latest.json (`aevatar-sandbox doctor` quotes it), and restores the
hierarchies' original mount options at the end. Needs root and a cgroup2 mount.
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
RESULTS = REPO / "bench" / "results" / "favordynmods-latest.json"
UID_BASE = 66_800  # one cold slot; the bench harness uses 66500+, bench.kubernetes 66900


def _set(favordynmods: bool, mountinfo_options: list[tuple[str, str]]) -> None:
    """Remount each cgroup2 hierarchy with its original options, with or without favordynmods."""
    from runtime.cgroups import remount

    for point, original in mountinfo_options:
        options = [o for o in original.split(",") if o and o != "favordynmods"]
        if favordynmods:
            options.append("favordynmods")
        remount(point, ",".join(options))


def _current() -> list[tuple[str, str]]:
    from runtime.cgroups import cgroup2_options

    with open("/proc/self/mountinfo") as f:
        return cgroup2_options(f.read())


def move_us(v2_root: str, n: int) -> list[float]:
    """Microseconds to write a sleeping child's pid into a fresh cgroup's cgroup.procs, n times."""
    base = os.path.join(v2_root, f"aevatar-bench-fdm-{os.getpid()}")
    os.makedirs(base, exist_ok=True)
    out = []
    try:
        for i in range(n):
            child = subprocess.Popen(["sleep", "5"])
            target = os.path.join(base, f"c{i}")
            os.mkdir(target)
            try:
                began = time.perf_counter()
                with open(os.path.join(target, "cgroup.procs"), "w") as f:
                    f.write(str(child.pid))
                out.append((time.perf_counter() - began) * 1e6)
            finally:
                child.kill()
                child.wait()
                while True:
                    try:
                        os.rmdir(target)
                        break
                    except OSError:
                        time.sleep(0.001)
    finally:
        os.rmdir(base)
    return out


def fork_exit_us(n: int) -> list[float]:
    """Microseconds for os.fork() + the child's _exit + waitpid, n times."""
    out = []
    for _ in range(n):
        began = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        out.append((time.perf_counter() - began) * 1e6)
    return out


async def run_ms(backend: Any, n: int, tag: str) -> list[float]:
    from runtime.types import RunRequest

    out = []
    for i in range(n):
        began = time.perf_counter()
        outcome = await backend.run(RunRequest(f"fdm-{os.getpid()}-{tag}-{i}", "python", "print('hello')"))
        out.append((time.perf_counter() - began) * 1000)
        if outcome.stdout != b"hello\n":
            raise RuntimeError(f"hello world failed: {outcome.state} {outcome.stderr[-300:]!r} {outcome.message}")
    return out


def _side(samples: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(samples), 2), "n": len(samples)}


async def main(rounds: int, n: int) -> dict[str, Any]:
    from processors.runner import default_backend
    from runtime.cgroups import discover_host, remount
    from streams.settings import Settings

    layout = discover_host()
    if os.geteuid() != 0 or layout.v2_dir is None:
        raise SystemExit("needs root and a cgroup2 hierarchy")
    v2_root = layout.v2_dir  # this process's own cgroup2 directory
    original = _current()
    samples: dict[str, dict[bool, list[float]]] = {"move_us": {}, "fork_exit_us": {}, "run_ms": {}}
    for metric in samples.values():
        metric[False], metric[True] = [], []
    disturbed = 0
    with tempfile.TemporaryDirectory(prefix="aevatar-bench-fdm-") as state:
        os.chmod(state, 0o755)
        settings = replace(
            Settings.from_env(),
            warm_pool_size=0,
            executor_slots=1,
            sandbox_uid_base=UID_BASE,
            sandbox_state_dir=Path(state),
            sandbox_cgroup_favor_dynmods=False,  # the bench sets the flag itself, round by round
        )
        backend = default_backend(settings)
        try:
            await run_ms(backend, 3, "warmup")
            for r in range(2 * rounds):
                on = r % 2 == 1
                _set(on, original)
                got = {"move_us": move_us(v2_root, n), "fork_exit_us": fork_exit_us(n)}
                got["run_ms"] = await run_ms(backend, n, f"{r}")
                # Another process (an executor with the opt-in) may flip the flag meanwhile: drop that round.
                if any(("favordynmods" in options.split(",")) != on for _, options in _current()):
                    disturbed += 1
                    print(f"[favordynmods] round {r + 1}: the flag changed under the bench, dropped", file=sys.stderr)
                    continue
                for name, values in got.items():
                    samples[name][on] += values
                print(f"[favordynmods] round {r + 1}/{2 * rounds} ({'on' if on else 'off'}) done", file=sys.stderr)
        finally:
            await backend.close()
            for point, options in original:
                remount(point, options)
    result: dict[str, Any] = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": _commit(),
        "rounds_each": rounds,
        "n_per_round": n,
        "original_options": dict(original),
        "rounds_dropped": disturbed,
    }
    for name, sides in samples.items():
        without, with_it = _side(sides[False]), _side(sides[True])
        result[name] = {"off": without, "on": with_it, "ratio_on_off": round(with_it["median"] / without["median"], 3)}
    return result


def _commit() -> str:
    done = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6, help="rounds per side (off and on alternate)")
    parser.add_argument("--n", type=int, default=20, help="samples of each measure per round")
    args = parser.parse_args()
    out = asyncio.run(main(args.rounds, args.n))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"{'measure':<34}{'off':>10}{'on':>10}{'on/off':>8}")
    for key, label in (
        ("move_us", "move into a cgroup (us)"),
        ("run_ms", "cold hello world, backend.run (ms)"),
        ("fork_exit_us", "fork + exit + wait (us)"),
    ):
        m = out[key]
        print(f"{label:<34}{m['off']['median']:>10.1f}{m['on']['median']:>10.1f}{m['ratio_on_off']:>8.2f}")
    print(f"medians over {args.rounds} rounds x {args.n} per side, alternating; {RESULTS}")
