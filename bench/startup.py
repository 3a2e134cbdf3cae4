"""The CLI's start-up, measured: `aevatar-sandbox --help`, and `run`'s own start until its first request.

    .venv/bin/python -m bench.startup [--n 20]

Three figures, each the median of n fresh processes (one warm-up first, so the page cache holds the
files): the wall time of `aevatar-sandbox --help`; the wall time of `aevatar-sandbox run hello.py`
against a port where nothing listens (it starts, makes its first request, is refused at once and
exits 69: everything before the first request, plus one refused connect); and, from
`python -X importtime`, what importing `aevatar_cli.main` costs and the biggest imports of `--help`
and of `run`. No gateway, broker or sandbox is needed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+(\d+) \|( +)(\S+)$")
EXE = Path(sys.executable).with_name("aevatar-sandbox")
PROBE = "import sys; sys.argv = ['aevatar-sandbox', *sys.argv[1:]]\nfrom aevatar_cli.main import app\napp()"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again on return: nothing listens there


def wall_ms(argv: list[str], env: dict[str, str], n: int) -> list[float]:
    subprocess.run(argv, env=env, capture_output=True, check=False)  # warm-up
    times = []
    for _ in range(n):
        began = time.perf_counter()
        subprocess.run(argv, env=env, capture_output=True, check=False)
        times.append((time.perf_counter() - began) * 1000)
    return times


def import_times(args: list[str], env: dict[str, str]) -> dict[str, float]:
    """Cumulative import time (ms) of each top-level import of the CLI run with `args` (-X importtime)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", PROBE, *args], env=env, capture_output=True, text=True, check=False
    )
    out: dict[str, float] = {}
    for line in done.stderr.splitlines():
        match = IMPORT_LINE.match(line)
        if match is not None and len(match.group(2)) == 1:  # one space after the bar: imported at top level
            out[match.group(3)] = out.get(match.group(3), 0.0) + int(match.group(1)) / 1000
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20)
    cfg = parser.parse_args()
    env = dict(os.environ, AEVATAR_GATEWAY_URL=f"http://127.0.0.1:{_closed_port()}")
    with tempfile.TemporaryDirectory() as tmp:
        hello = Path(tmp) / "hello.py"
        hello.write_text("print('hello, world')\n")
        help_ms = wall_ms([str(EXE), "--help"], env, cfg.n)
        run_ms = wall_ms([str(EXE), "run", str(hello)], env, cfg.n)
        bare_ms = wall_ms([sys.executable, "-c", "pass"], env, cfg.n)
        imports_help = import_times(["--help"], env)
        imports_run = import_times(["run", str(hello)], env)

    def top(imports: dict[str, float]) -> dict[str, float]:
        return dict(sorted(((k, round(v, 1)) for k, v in imports.items()), key=lambda kv: -kv[1])[:6])

    result = {
        "n": cfg.n,
        "python_bare_ms": round(statistics.median(bare_ms), 1),
        "help_ms": round(statistics.median(help_ms), 1),
        "run_until_first_request_ms": round(statistics.median(run_ms), 1),
        "import_aevatar_cli_main_ms": round(imports_help.get("aevatar_cli.main", 0.0), 1),
        "help_top_imports_ms": top(imports_help),
        "run_top_imports_ms": top(imports_run),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
