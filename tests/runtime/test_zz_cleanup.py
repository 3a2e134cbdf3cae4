"""Runs last (file order): after the whole suite, nothing of any run remains."""

from __future__ import annotations

import os
import time

import pytest

from runtime.cgroups import discover_host
from runtime.local import LocalBackend
from runtime.types import RunRequest
from tests.runtime.conftest import CGROUP_PREFIX, STATE_DIR, sandbox_uid_processes

pytestmark = pytest.mark.sandbox


async def test_nothing_of_any_run_remains(backend: LocalBackend) -> None:
    outcome = await backend.run(RunRequest("last", "python", "print(1)"))
    assert outcome.stdout == b"1\n"
    deadline = time.monotonic() + 2
    while sandbox_uid_processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sandbox_uid_processes() == [], "a sandbox process survived"
    layout = discover_host()
    leftovers = []
    for base in [layout.v2_dir, *layout.v1_dirs.values()]:
        assert base is not None
        prefix = os.path.join(base, CGROUP_PREFIX)
        if os.path.isdir(prefix):
            leftovers += [os.path.join(prefix, d) for d in os.listdir(prefix) if os.path.isdir(os.path.join(prefix, d))]
    assert leftovers == [], "run cgroups remain"
    with open("/proc/self/mountinfo") as f:
        mounts = [line for line in f if STATE_DIR in line]
    assert mounts == [], "a run's tmpfs is still mounted"
    runs = os.path.join(STATE_DIR, "runs")
    assert os.listdir(runs) == [], "a run's directory remains"
    art = os.path.join(STATE_DIR, "art")
    assert not os.path.isdir(art) or os.listdir(art) == [], "a compiled run's artifacts remain"
    assert sandbox_uid_processes(62500, 1) == []
