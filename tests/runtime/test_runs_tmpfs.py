"""The local backend's runs/ on a tmpfs of its own (`LocalBackendConfig.runs_tmpfs_mib`), as the
executor's default_backend sets it up: real bubblewrap runs, a real compiler and its cache."""

from __future__ import annotations

import os
import textwrap

import pytest

from runtime.local import LocalBackend, LocalBackendConfig
from runtime.types import RunRequest
from runtime.workspace import Workspace, mount_runs, unmount_runs
from streams.states import State
from tests.runtime.conftest import SMALL, make_config, next_id, remove_state_dir

pytestmark = pytest.mark.sandbox

TAG = f"{os.getpid()}-runs-tmpfs"
UID_BASE = 62600  # clear of the other runtime tests' uids (the session's 61000..., 62500 of the hostile test)

# Prints how many names the inode of its own binary has: 2 or more when the run's artifact is a hard
# link to the compile cache's entry, 1 when it had to be copied.
NLINK_C = textwrap.dedent("""
    #include <stdio.h>
    #include <sys/stat.h>
    int main(void) {
        struct stat st;
        if (stat("/proc/self/exe", &st) != 0) { perror("stat"); return 1; }
        printf("%lu\\n", (unsigned long)st.st_nlink);
        return 0;
    }
""")


def mounts_at(path: str) -> list[str]:
    """The file system types mounted exactly at `path` (stacked mounts show as several)."""
    with open("/proc/self/mountinfo") as f:
        fields = [line.split() for line in f]
    return [row[row.index("-") + 1] for row in fields if row[4] == path]


def config(state_dir: str) -> LocalBackendConfig:
    return make_config(
        state_dir=state_dir,
        cgroup_prefix=f"aevatar-sandbox-test-{TAG}",
        uid_base=UID_BASE,
        max_slots=2,
        runs_tmpfs_mib=16,
    )


async def test_runs_live_on_a_tmpfs_and_artifacts_stay_hard_links_to_the_cache() -> None:
    state_dir = f"/tmp/aevatar-sandbox-tests-{TAG}-a"
    runs = os.path.join(state_dir, "runs")
    backend = LocalBackend(config(state_dir))
    await backend.check()
    try:
        assert mounts_at(runs) == ["tmpfs"]
        outcome = await backend.run(RunRequest(next_id("tmpfs"), "python", "print('on tmpfs')", limits=SMALL))
        assert (outcome.state, outcome.stdout) == (State.SUCCEEDED, b"on tmpfs\n")
        # A compiled program twice: the second run takes its binary from the compile cache, which
        # lives on the state dir's disk. It is still a hard link, not a copy: the run's artifacts
        # directory is beside runs/, on the same file system as the cache, not inside the tmpfs.
        first = await backend.run(RunRequest(next_id("tmpfs"), "c", NLINK_C))
        again = await backend.run(RunRequest(next_id("tmpfs"), "c", NLINK_C))
        assert first.state is State.SUCCEEDED, first
        assert again.state is State.SUCCEEDED, again
        assert int(again.stdout) >= 2, again.stdout
        assert os.listdir(runs) == []  # each run's directories are gone
    finally:
        await backend.close()
    assert mounts_at(runs) == []  # unmounted at close
    remove_state_dir(state_dir)


async def test_a_predecessors_mount_is_reused_not_stacked() -> None:
    """A killed executor leaves runs/ mounted; the next backend on that state dir (after the sweep)
    takes it over, and unmounts it at its close."""
    state_dir = f"/tmp/aevatar-sandbox-tests-{TAG}-b"
    runs = os.path.join(state_dir, "runs")
    assert mount_runs(state_dir, 16) is True  # what the killed predecessor left
    assert mount_runs(state_dir, 16) is False
    assert mounts_at(runs) == ["tmpfs"]
    backend = LocalBackend(config(state_dir))
    try:
        await backend.check()
        assert mounts_at(runs) == ["tmpfs"]
        outcome = await backend.run(RunRequest(next_id("tmpfs"), "python", "print(2)", limits=SMALL))
        assert outcome.stdout == b"2\n"
    finally:
        await backend.close()
        unmount_runs(state_dir)  # nothing left to detach if close did it; it must have
    assert mounts_at(runs) == []
    remove_state_dir(state_dir)


def test_a_workspace_keeps_its_artifacts_beside_runs() -> None:
    ws = Workspace("/srv/state", disk_mib=1, inodes=64)
    assert ws.root == f"/srv/state/runs/{ws.run_id}"
    assert ws.art == f"/srv/state/art/{ws.run_id}"
