"""The local backend's close (issue 29, point 5): bounded, and it leaves nothing behind.

Real bubblewrap and real cgroups. A run whose bubblewrap monitor is stopped (SIGSTOP) cannot be
reaped: its kill lands on the sandbox, but the monitor never exits. close() must still return
within its bound, and clean up the run's processes, cgroups and mounts, and the backend's own
cgroup directory (the prefix) in every hierarchy, the v1 memory one included.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

import pytest

from runtime.cgroups import discover_host
from runtime.local import LocalBackend, LocalBackendConfig
from runtime.types import Limits, OutputChunk, RunRequest
from streams.states import State
from tests.runtime.conftest import SMALL, make_config, next_id, remove_state_dir, sandbox_uid_processes

pytestmark = pytest.mark.sandbox

TAG = f"{os.getpid()}-shutdown"
PREFIX = f"aevatar-sandbox-test-{TAG}"
UID_BASE = 62700  # clear of the other runtime tests' uids (61000..., 62500, 62600...)
SLOTS = 2
LONG = Limits(wall_time_ms=120_000, cpu_time_ms=120_000, memory_mib=64, processes=32, output_bytes=65_536, disk_mib=8)


def config(state_dir: str, **overrides: object) -> LocalBackendConfig:
    return make_config(
        state_dir=state_dir, cgroup_prefix=PREFIX, uid_base=UID_BASE, max_slots=SLOTS, runs_tmpfs_mib=16, **overrides
    )


def prefix_dirs() -> list[str]:
    """The backend's cgroup directory in every hierarchy of this host where it still exists."""
    layout = discover_host()
    bases = [b for b in [layout.v2_dir, *layout.v1_dirs.values()] if b is not None]
    return sorted({os.path.join(b, PREFIX) for b in bases if os.path.isdir(os.path.join(b, PREFIX))})


def mounts_under(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(path)]


def assert_nothing_left(state_dir: str) -> None:
    assert sandbox_uid_processes(UID_BASE, SLOTS) == [], "a sandbox process survived close"
    assert prefix_dirs() == [], "the backend's cgroup directories remain"
    assert mounts_under(state_dir) == [], "a mount remains"
    runs = os.path.join(state_dir, "runs")
    assert not os.path.isdir(runs) or os.listdir(runs) == [], "a run's directory remains"


async def test_a_clean_close_removes_the_backends_own_cgroup_directories() -> None:
    state_dir = f"/tmp/aevatar-sandbox-tests-{TAG}-clean"
    backend = LocalBackend(config(state_dir))
    await backend.check()
    try:
        outcome = await backend.run(RunRequest(next_id("clean"), "python", "print('x')", limits=SMALL))
        assert (outcome.state, outcome.stdout) == (State.SUCCEEDED, b"x\n")
        assert prefix_dirs() != []  # the run made them: the check below is not vacuous
    finally:
        await backend.close()
    assert_nothing_left(state_dir)
    remove_state_dir(state_dir)


async def test_close_is_bounded_when_a_run_cannot_be_reaped() -> None:
    state_dir = f"/tmp/aevatar-sandbox-tests-{TAG}-stuck"
    backend = LocalBackend(config(state_dir, close_timeout_s=1.0))
    await backend.check()
    ready = asyncio.Event()

    async def on_output(chunk: OutputChunk) -> None:
        if b"ready" in chunk.data:
            ready.set()

    execution_id = next_id("stuck")
    code = "import time\nprint('ready', flush=True)\ntime.sleep(600)\n"
    run = asyncio.create_task(backend.run(RunRequest(execution_id, "python", code, limits=LONG), on_output))
    monitor: int | None = None
    try:
        async with asyncio.timeout(60):
            await ready.wait()
        monitor = backend._running[execution_id].monitor_pid
        assert monitor is not None
        with open(f"/proc/{monitor}/comm") as f:
            assert f.read() == "bwrap\n"  # the run's bubblewrap monitor, our child, is what gets stopped
        os.kill(monitor, signal.SIGSTOP)  # the monitor can neither reap the sandbox nor exit
        async with asyncio.timeout(30):  # unbounded before: close waited for this run forever
            await backend.close()
        assert_nothing_left(state_dir)
        async with asyncio.timeout(30):  # its monitor killed, the run itself ends too
            outcome = await run
        assert outcome.state is not State.SUCCEEDED, outcome
    finally:
        if monitor is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(monitor, signal.SIGKILL)
        run.cancel()
        with contextlib.suppress(BaseException):
            await run
    remove_state_dir(state_dir)
