"""The CLI starts fast: `--help` and every command's own start load only what that command uses.

Checked by what is imported (sys.modules in a fresh interpreter, and `-X importtime`), never by a
time: the start-up time is a bench measure (bench/startup.py, bench/README.md).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

HEAVY = ("gateway", "processors", "runtime", "aiokafka", "uvicorn", "starlette", "rich", "httpx", "fastavro")

# Runs the CLI as its console script does, then prints the top-level packages it had imported.
PROBE = """
import json, sys
sys.argv = ["aevatar-sandbox", *json.loads(sys.argv[1])]
from aevatar_cli.main import app
try:
    app()
except SystemExit:
    pass
print(json.dumps(sorted({n.split(".")[0] for n, m in sys.modules.items() if m is not None})), file=sys.stderr)
"""


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens there once it is closed


def _top_level_imports(*argv: str) -> set[str]:
    env = dict(os.environ, AEVATAR_GATEWAY_URL=_closed_port_url())  # never a gateway someone runs here
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(list(argv))], capture_output=True, text=True, timeout=60, env=env
    )
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


@pytest.mark.parametrize("argv", [("--help",), ("run", "--help"), ("up", "--help"), ("kafka", "--help"), ()])
def test_help_imports_none_of_gateway_processors_or_runtime(argv: tuple[str, ...]) -> None:
    loaded = _top_level_imports(*argv)
    assert "aevatar_cli" in loaded and "typer" in loaded
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_importtime_of_help_names_none_of_them() -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", PROBE, json.dumps(["--help"])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    imported = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "aevatar_cli.main" in imported
    assert not {name for name in imported if name.split(".")[0] in HEAVY}


def test_run_loads_the_http_client_but_not_the_server_the_processors_or_the_runtime() -> None:
    # `run` against a port where nothing listens: it starts, fails to connect, and exits 69.
    loaded = _top_level_imports("run", __file__, "--language", "python")
    assert {"httpx", "gateway"} <= loaded
    assert not loaded & {"processors", "runtime", "aiokafka", "uvicorn", "starlette"}, loaded


def test_the_cli_names_the_processor_roles_as_the_runner_does() -> None:
    from aevatar_cli.pipeline_cmds import ROLES as CLI_ROLES
    from processors.runner import ROLES

    assert CLI_ROLES == ROLES
