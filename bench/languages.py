"""Each language's self-test through the local backend, cold (a compile-cache miss) and cached.

    .venv/bin/python -m bench.languages [--n 5]

Straight through a real local backend's `run` (no pipeline, warm pool off, one slot): per language,
n runs of its self-test (the README's languages table), each "cold" run with a fresh comment in the
source (a compile-cache miss), then n runs of one source (cache hits after the first, which is not
counted). Medians of the wall time of `backend.run` (the total), of `compile_ms` and of `run_ms`.
Every run's stdout is checked. Writes bench/results/languages-latest.json. Needs root and the
toolchains (make install-toolchains).
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
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "languages-latest.json"
UID_BASE = 66_870  # one slot; bench.limits 66850, bench.favordynmods 66800, bench.kubernetes 66900


def _comment(language: str) -> str:
    return "#" if language in ("python", "bash") else "//"


async def main(n: int) -> dict[str, Any]:
    from processors.runner import default_backend
    from runtime.languages import LANGUAGES
    from runtime.types import RunRequest
    from streams.settings import Settings

    out: dict[str, Any] = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "n": n,
        "languages": {},
    }
    with tempfile.TemporaryDirectory(prefix="aevatar-bench-languages-") as state:
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
            infos = {i.name: i for i in await backend.languages()}

            async def timed(name: str, code: str) -> tuple[float, int, int]:
                lang = LANGUAGES[name]
                request = RunRequest(f"bl-{uuid.uuid4().hex[:12]}", name, code, stdin=lang.self_test_stdin)
                began = time.perf_counter()
                outcome = await backend.run(request)
                total_ms = (time.perf_counter() - began) * 1000
                if outcome.stdout != lang.self_test_expected_stdout:
                    raise RuntimeError(f"{name}: {outcome.state} {outcome.stdout[:200]!r} {outcome.stderr[-300:]!r}")
                return total_ms, outcome.compile_ms, outcome.run_ms

            for name in sorted(LANGUAGES):
                lang = LANGUAGES[name]
                base = f"{lang.self_test_code}\n{_comment(name)} bench.languages"
                cold = [await timed(name, f"{base} {uuid.uuid4().hex}\n") for _ in range(n)]
                fixed = f"{base} {uuid.uuid4().hex}\n"
                await timed(name, fixed)  # the miss that fills the cache
                cached = [await timed(name, fixed) for _ in range(n)]
                out["languages"][name] = {
                    "version": infos[name].version,
                    "cold": _medians(cold),
                    "cached": _medians(cached),
                }
                c, h = out["languages"][name]["cold"], out["languages"][name]["cached"]
                print(
                    f"[languages] {name}: cold {c['total_ms']:.0f} ms, cached {h['total_ms']:.0f} ms", file=sys.stderr
                )
        finally:
            await backend.close()
    return out


def _medians(samples: list[tuple[float, int, int]]) -> dict[str, float]:
    return {
        "total_ms": round(statistics.median(s[0] for s in samples), 1),
        "compile_ms": statistics.median(s[1] for s in samples),
        "run_ms": statistics.median(s[2] for s in samples),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5, help="runs of each kind per language")
    result = asyncio.run(main(parser.parse_args().n))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print("| language | version | cold: total (compile / run) | cached: total (compile / run) |")
    print("|---|---|---|---|")
    for name, entry in result["languages"].items():
        c, h = entry["cold"], entry["cached"]
        print(
            f"| {name} | {entry['version']} | {c['total_ms']:.0f} ms ({c['compile_ms']:.0f} / {c['run_ms']:.0f})"
            f" | {h['total_ms']:.0f} ms ({h['compile_ms']:.0f} / {h['run_ms']:.0f}) |"
        )
    print(f"medians of {result['n']} runs each; {RESULTS}")
