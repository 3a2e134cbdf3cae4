"""The CLI client without a pipeline: a missing gateway is one clear line, and refusals name the field."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from streams.settings import Settings
from tests.gateway.helpers import free_port, running_gateway


async def _cli(env: dict[str, str], *args: str, cwd: Path) -> tuple[int, str, str]:
    exe = Path(sys.executable).with_name("aevatar-sandbox")
    process = await asyncio.create_subprocess_exec(
        str(exe),
        *args,
        cwd=cwd,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    code = process.returncode
    # communicate() returned, so the CLI has exited: it must have exited by itself, not died of a signal.
    assert code is not None and code >= 0, f"the CLI died of signal {-(code or 0)}: {err.decode()[-2000:]}"
    return code, out.decode(), err.decode()


async def test_run_says_in_one_line_when_no_gateway_runs(tmp_path: Path) -> None:
    (tmp_path / "hello.py").write_text("print('hello')\n")
    code, out, err = await _cli({"AEVATAR_GATEWAY_PORT": str(free_port())}, "run", "hello.py", cwd=tmp_path)
    assert code == 69 and out == ""
    assert err.startswith("error: no gateway is running at http://127.0.0.1:") and err.count("\n") == 1
    assert "Traceback" not in err


async def test_run_refuses_an_unknown_extension_without_contacting_anyone(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hi\n")
    code, _, err = await _cli({}, "run", "notes.txt", cwd=tmp_path)
    assert code == 1 and "pass --language" in err


@pytest.mark.kafka
async def test_refusals_and_status_through_a_real_gateway(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "big.py").write_text("print(1)\n")
    async with running_gateway(settings) as gw:
        env = {"AEVATAR_GATEWAY_URL": gw.url}
        code, _, err = await _cli(env, "run", "big.py", "--language", "cobol", cwd=tmp_path)
        assert code == 2 and "field language" in err and "422" in err
        code, _, err = await _cli(env, "status", "missing-id", cwd=tmp_path)
        assert code == 2 and "404" in err
        code, _, err = await _cli(env, "cancel", "missing-id", cwd=tmp_path)
        assert code == 2 and "404" in err
