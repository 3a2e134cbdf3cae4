"""End to end: the gateway, the real broker, the real processors and real sandboxes (the `pipeline` fixture)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import pytest

from gateway import signature
from streams.settings import Settings
from tests.gateway.helpers import running_gateway, webhook_receiver

pytestmark = [pytest.mark.kafka, pytest.mark.sandbox]

RUN_TIMEOUT_S = 90


async def test_post_with_wait_returns_hello_and_succeeded(pipeline: Settings) -> None:
    async with running_gateway(pipeline, max_wait_ms=RUN_TIMEOUT_S * 1000) as gw:
        response = await gw.client.post(
            "/v1/executions?wait=true",
            json={"language": "python", "code": "print('hello')"},
            timeout=RUN_TIMEOUT_S + 10,
        )
        assert response.status_code == 200, response.text
        execution = response.json()
        assert (execution["state"], execution["stdout"], execution["exit_code"]) == ("SUCCEEDED", "hello\n", 0)
        assert execution["finished_at"] is not None and execution["attempts"] >= 1
        events = (await gw.client.get(f"/v1/executions/{execution['id']}/events")).json()
        assert next(e["state"] for e in events) == "REQUESTED" and events[-1]["state"] == "SUCCEEDED"


async def test_a_limit_above_the_maximum_is_refused_before_kafka(pipeline: Settings) -> None:
    async with running_gateway(pipeline) as gw:
        response = await gw.client.post(
            "/v1/executions", json={"language": "python", "code": "1", "limits": {"memory_mib": 1_000_000}}
        )
        assert response.status_code == 422 and response.json()["error"]["field"] == "limits.memory_mib"


async def test_sse_delivers_output_before_the_run_ends(pipeline: Settings) -> None:
    # The program stamps its second line with the time it printed it (the sandbox shares the host's
    # realtime clock): "first" must have arrived here before then, however loaded the machine is.
    code = "import time\nprint('first', flush=True)\ntime.sleep(2)\nprint('second', time.time(), flush=True)\n"
    async with running_gateway(pipeline) as gw:
        accepted = (await gw.client.post("/v1/executions", json={"language": "python", "code": code})).json()
        seen: list[tuple[str, float, str]] = []
        async with asyncio.timeout(RUN_TIMEOUT_S):
            async with gw.client.stream("GET", f"/v1/executions/{accepted['id']}/logs", timeout=RUN_TIMEOUT_S) as resp:
                event = ""
                async for line in resp.aiter_lines():
                    if line.startswith("event:"):
                        event = line.split(":", 1)[1].strip()
                    elif line.startswith("data:"):
                        seen.append((event, time.time(), line.split(":", 1)[1].strip()))
        outputs = [(t, json.loads(d)["text"]) for e, t, d in seen if e == "stdout"]
        text = "".join(x for _, x in outputs)
        first_line, second_line, rest = text.split("\n", 2)
        assert (first_line, second_line.split()[0], rest) == ("first", "second", "")
        second_printed_at = float(second_line.split()[1])
        first_at = next(t for t, x in outputs if "first" in x)
        assert first_at < second_printed_at, "'first' came only after the program printed its second line"
        assert seen[-1][0] == "end" and json.loads(seen[-1][2])["state"] == "SUCCEEDED"


async def test_webhooks_signed_and_retried_until_the_third_attempt(pipeline: Settings) -> None:
    # The receivers listen on loopback: a development setup, which must say so.
    fast = {"webhook_backoff_base_ms": 200, "webhook_secret": "e2e-secret", "webhook_allow_private": True}
    async with (
        webhook_receiver() as (url_ok, ok),
        webhook_receiver(fail_first=2) as (url_flaky, flaky),
        running_gateway(pipeline, **fast) as gw,
    ):
        for url in (url_ok, url_flaky):
            response = await gw.client.post(
                "/v1/executions", json={"language": "python", "code": "print('hook')", "callback_url": url}
            )
            assert response.status_code == 202
        async with asyncio.timeout(RUN_TIMEOUT_S):
            while len(ok) < 1 or len(flaky) < 3:
                await asyncio.sleep(0.1)
        for delivery in [*ok, *flaky]:
            assert signature.verify(
                "e2e-secret", delivery.headers["x-aevatar-signature"], delivery.body, int(time.time())
            )
            body = json.loads(delivery.body)
            assert (body["state"], body["stdout"]) == ("SUCCEEDED", "hook\n")
        assert [d.headers["x-aevatar-attempt"] for d in flaky] == ["1", "2", "3"]


async def test_a_restarted_gateway_still_serves_an_old_execution(pipeline: Settings) -> None:
    async with running_gateway(pipeline, max_wait_ms=RUN_TIMEOUT_S * 1000) as gw:
        response = await gw.client.post(
            "/v1/executions?wait=true", json={"language": "python", "code": "print('old')"}, timeout=RUN_TIMEOUT_S + 10
        )
        assert response.status_code == 200
        execution_id = response.json()["id"]
    async with running_gateway(pipeline) as gw:
        old = (await gw.client.get(f"/v1/executions/{execution_id}")).json()
        assert (old["state"], old["stdout"]) == ("SUCCEEDED", "old\n")


async def _cli(url: str, *args: str, cwd: Path) -> tuple[int, str, str]:
    exe = Path(sys.executable).with_name("aevatar-sandbox")
    env = {**os.environ, "AEVATAR_GATEWAY_URL": url}
    process = await asyncio.create_subprocess_exec(
        str(exe), *args, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT_S)
    code = process.returncode
    # communicate() returned, so the CLI has exited: it must have exited by itself, not died of a signal.
    assert code is not None and code >= 0, f"the CLI died of signal {-(code or 0)}: {err.decode()[-2000:]}"
    return code, out.decode(), err.decode()


async def test_cli_run_prints_output_and_exits_with_the_program_code(pipeline: Settings, tmp_path: Path) -> None:
    (tmp_path / "hello.py").write_text("print('hello')\n")
    (tmp_path / "fail.py").write_text("import sys\nprint('oops', file=sys.stderr)\nsys.exit(3)\n")
    (tmp_path / "echo.py").write_text("import sys\nprint(sys.argv[1:], sys.stdin.read())\n")
    (tmp_path / "in.txt").write_text("from stdin")
    async with running_gateway(pipeline) as gw:
        assert await _cli(gw.url, "run", "hello.py", cwd=tmp_path) == (0, "hello\n", "")
        code, out, err = await _cli(gw.url, "run", "fail.py", cwd=tmp_path)
        assert (code, out) == (3, "") and "oops" in err
        code, out, _ = await _cli(gw.url, "run", "echo.py", "--stdin", "in.txt", "--", "-x", "y", cwd=tmp_path)
        assert (code, out) == (0, "['-x', 'y'] from stdin\n")
