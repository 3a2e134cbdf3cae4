"""The warm pool is on by default: a hello world on the default settings runs in a pool sandbox.

Real bubblewrap, the backend the embedded default builds (processors.runner.default_backend); only
its uid range and state dir are moved off the platform's own, so a running `up` is not swept.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from processors.runner import default_backend
from runtime.metrics import warm_pool_count
from runtime.types import Limits, RunRequest
from streams.settings import Settings
from streams.states import State

UID_BASE = 65_200  # clear of the runtime suite's (61000+), the bench's (66500+) and `up`'s (61000)


def test_default_settings_size_the_pool_from_the_executor() -> None:
    defaults = Settings.from_env({})
    assert defaults.warm_pool_size == -1 and defaults.executor_slots == 4
    assert (defaults.warm_pool_idle, defaults.warm_pool_ceiling) == (2, 4)
    assert set(defaults.warm_pool_languages.split(",")) == {"python", "javascript"}
    assert replace(defaults, executor_slots=1).warm_pool_idle == 1
    assert replace(defaults, executor_slots=16).warm_pool_idle == 8
    off = Settings.from_env({"AEVATAR_WARM_POOL_SIZE": "0"})
    assert off.warm_pool_idle == 0


@pytest.mark.sandbox
async def test_a_hello_world_on_the_default_settings_takes_a_pool_sandbox() -> None:
    if os.geteuid() != 0:
        pytest.fail("the local backend needs root (cgroups, uid drop)")
    # Under /tmp, not pytest's tmp_path: the sandbox's uid must be able to reach its workspace.
    state_dir = Path(f"/tmp/aevatar-sandbox-tests-{os.getpid()}-defaults")
    settings = replace(Settings(), sandbox_uid_base=UID_BASE, sandbox_state_dir=state_dir)
    backend = default_backend(settings)
    try:
        await backend.check()
        pool = backend.pool
        assert pool is not None, "the default settings leave the warm pool off"
        key = pool.default_key("python")
        assert key.limits == Limits()  # the policy defaults: what a request with no limits gets
        assert await pool.wait_filled(key, settings.warm_pool_idle, timeout_s=60)
        hits, misses = warm_pool_count("python", hit=True), warm_pool_count("python", hit=False)

        outcome = await backend.run(RunRequest("default-pool-1", "python", "print('hello, world')"))

        assert outcome.state is State.SUCCEEDED, outcome
        assert outcome.stdout == b"hello, world\n"
        assert warm_pool_count("python", hit=True) == hits + 1
        assert warm_pool_count("python", hit=False) == misses

        # Other limits miss the pool and run cold, as before.
        cold = await backend.run(RunRequest("default-pool-2", "python", "print('cold')", limits=Limits(memory_mib=128)))
        assert cold.state is State.SUCCEEDED and cold.stdout == b"cold\n"
        assert warm_pool_count("python", hit=False) == misses + 1
    finally:
        await backend.close()
        shutil.rmtree(state_dir, ignore_errors=True)
