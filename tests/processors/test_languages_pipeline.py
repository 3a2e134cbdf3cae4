"""Every language's self-test through the whole pipeline: the real broker, `aevatar-sandbox
worker all` as a subprocess, and the local bubblewrap backend. One worker serves all of them
(a worker per language would spend most of the test starting JVM-free Python processes)."""

from __future__ import annotations

import asyncio

import pytest

from runtime.languages import LANGUAGES
from streams.client import SandboxClient
from streams.records import ExecutionResult
from streams.settings import Settings
from streams.states import State

pytestmark = [pytest.mark.kafka, pytest.mark.sandbox]

# Roomy enough for a cold javac/rustc/tsc compile on a loaded 2-core box (the compile phase has
# its own limits; these are the run's).
LIMITS = {"wall_time_ms": 10_000, "cpu_time_ms": 5_000, "memory_mib": 256}


async def test_every_language_self_test_succeeds_through_the_pipeline(pipeline: Settings) -> None:
    async with SandboxClient(pipeline) as client:

        async def one(name: str) -> ExecutionResult:
            lang = LANGUAGES[name]
            return await client.run(
                name, lang.self_test_code, stdin=lang.self_test_stdin.decode(), limits=LIMITS, timeout_s=240
            )

        names = sorted(LANGUAGES)
        results = dict(zip(names, await asyncio.gather(*(one(n) for n in names)), strict=True))
    failures = {
        name: (r.state, r.limit, r.stdout[:200], r.stderr[:500], r.compile_output[:500])
        for name, r in results.items()
        if r.state is not State.SUCCEEDED or r.stdout != LANGUAGES[name].self_test_expected_stdout
    }
    assert failures == {}
    for name, r in results.items():
        assert r.language == name and r.exit_code == 0
        if not LANGUAGES[name].compiled:
            assert r.compile_ms == 0 and r.compile_output == b""


async def test_a_compile_error_ends_as_compile_error_through_the_pipeline(pipeline: Settings) -> None:
    rust = LANGUAGES["rust"]
    assert rust.compile_error_code is not None
    async with SandboxClient(pipeline) as client:
        result = await client.run("rust", rust.compile_error_code, timeout_s=240)
    assert result.state is State.COMPILE_ERROR
    assert rust.compile_error_fragment in result.compile_output and result.stdout == b""
