"""Reaping bubblewrap's sandbox init.

When the program ends, bubblewrap's monitor exits without waiting for the sandbox's
init (its child), which is then re-parented to the nearest subreaper, by default the
host's pid 1, and lingers there as a zombie for as long as that init takes. The
supervisor makes itself a child subreaper, so the orphan comes back to it, and reaps
that one pid (known from bubblewrap's status fd). It never calls waitpid(-1): other
children of the process belong to asyncio's child watcher.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import time

PR_SET_CHILD_SUBREAPER = 36
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def set_subreaper() -> bool:
    return bool(_libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)


def _try_reap(pid: int) -> bool:
    """True when `pid` is gone for us: reaped now, or not our child (any more)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done == pid


async def reap(pid: int, timeout_s: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not _try_reap(pid):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.002)
    return True


def reap_sync(pid: int, timeout_s: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not _try_reap(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True
