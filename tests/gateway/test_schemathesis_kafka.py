"""schemathesis against /openapi.json of a real gateway (real broker): no 5xx, no response off the schema."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from streams.settings import Settings
from tests.gateway.helpers import running_gateway

pytestmark = pytest.mark.kafka

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


async def test_schemathesis_finds_no_server_error_and_no_schema_violation(settings: Settings, tmp_path: Path) -> None:
    st = Path(sys.executable).with_name("schemathesis")
    async with running_gateway(settings, max_wait_ms=200, rate_limit_burst=100_000, rate_limit_per_min=6_000_000) as gw:
        process = await asyncio.create_subprocess_exec(
            str(st),
            "run",
            f"{gw.url}/openapi.json",
            "--checks",
            CHECKS,
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-examples",
            "40",
            "--workers",
            "2",
            "--request-timeout",
            "10",
            "--seed",
            "1",
            "--exclude-path",
            "/v1/executions/{id}/logs",  # a stream; schemathesis reads no SSE. Its 404s are covered elsewhere.
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=tmp_path,
        )
        output, _ = await asyncio.wait_for(process.communicate(), 280)
    text = output.decode(errors="replace")
    assert process.returncode == 0, text[-6000:]
    assert "No issues found" in text or "passed" in text, text[-3000:]
