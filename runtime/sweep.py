"""Claiming a local backend's host resources, and reclaiming what a killed predecessor left.

An executor killed with -9 cannot clean up: its bubblewrap processes die with it (parent-death
signal), but run cgroups, run directories and their tmpfs mounts remain. The next executor
that claims the same uid range sweeps them before it runs anything. The claim is an flock,
so two live executors can never share (and sweep) one uid range.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

from runtime.cgroups import RunCgroup, discover_host
from runtime.errors import RuntimeSandboxError

MNT_DETACH = 2


class ResourcesInUse(RuntimeSandboxError):
    """Another live executor holds this uid range, state dir and cgroup prefix."""


@dataclass(frozen=True, slots=True)
class SweepReport:
    processes_killed: int
    cgroups_removed: int
    runs_removed: int


def claim(state_dir: str) -> int:
    """Hold an exclusive lock on `state_dir` for this process's lifetime; returns the lock's fd."""
    os.makedirs(state_dir, mode=0o755, exist_ok=True)
    fd = os.open(os.path.join(state_dir, "executor.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ResourcesInUse(
            f"another executor on this host holds {state_dir}; give each executor its own "
            "AEVATAR_SANDBOX_UID_BASE (slot uids must not overlap)"
        ) from None
    return fd


def _uid_processes(uid_base: int, slots: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{name}")
        except OSError:
            continue
        if uid_base <= st.st_uid < uid_base + slots:
            found.append(int(name))
    return found


def _umount(path: str) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.umount2(path.encode(), MNT_DETACH)


def sweep(state_dir: str, cgroup_prefix: str, uid_base: int, slots: int) -> SweepReport:
    """Kill, unmount and remove whatever a previous executor with these resources left."""
    killed = 0
    for pid in _uid_processes(uid_base, slots):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            killed += 1
    layout = discover_host()
    names: set[str] = set()
    for base in [layout.v2_dir, *layout.v1_dirs.values()]:
        if base is None:
            continue
        prefix_dir = os.path.join(base, cgroup_prefix)
        if os.path.isdir(prefix_dir):
            names.update(d for d in os.listdir(prefix_dir) if os.path.isdir(os.path.join(prefix_dir, d)))
    removed = 0
    for name in sorted(names):
        group = RunCgroup(layout, cgroup_prefix, name)
        for _ in range(200):
            if not group.pids():
                break
            group.kill()
        if group.remove_sync():
            removed += 1
    runs_dir = Path(state_dir) / "runs"
    runs = 0
    if runs_dir.is_dir():
        mounted = {line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()}
        for run in runs_dir.iterdir():
            disk = run / "disk"
            if str(disk) in mounted:
                _umount(str(disk))
            shutil.rmtree(run, ignore_errors=True)  # rmtree never follows symlinks
            runs += 1
    art_dir = Path(state_dir) / "art"  # compiled runs' artifacts (runtime/workspace.py)
    if art_dir.is_dir():
        for art in art_dir.iterdir():
            shutil.rmtree(art, ignore_errors=True)
    return SweepReport(killed, removed, runs)
