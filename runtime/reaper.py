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
import functools
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


def exited(proc: asyncio.subprocess.Process) -> asyncio.Future[int]:
    """`proc`'s exit status as soon as it has exited, as `proc.returncode` would have it.

    asyncio's default child watcher learns of an exit from a thread blocked in waitpid, which then
    wakes the loop (~0.5 ms per run measured on this VM). Here the loop itself watches a pidfd and
    reads the status with WNOWAIT, leaving the reaping to that watcher as before; where pidfds are
    missing, or the watcher has reaped the child already, the status is the watcher's.
    """
    loop = asyncio.get_running_loop()
    waited = asyncio.ensure_future(proc.wait())
    if not hasattr(os, "pidfd_open") or not hasattr(os, "P_PIDFD"):
        return waited
    try:
        pidfd = os.pidfd_open(proc.pid)
    except OSError:  # no pidfd (kernel < 5.3), or the child is gone already
        return waited
    status: asyncio.Future[int] = loop.create_future()
    watching = True

    def unwatch() -> None:
        nonlocal watching
        if watching:
            watching = False
            loop.remove_reader(pidfd)
            os.close(pidfd)

    def settle(code: int | None) -> None:
        unwatch()
        if status.done():
            return
        if code is not None:
            status.set_result(code)
        else:
            waited.add_done_callback(functools.partial(_pass_on, status))

    def on_exit() -> None:
        try:
            info = os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOWAIT | os.WNOHANG)
        except OSError:  # the watcher reaped it first (ECHILD), or no waitid on pidfds (kernel < 5.4)
            settle(None)  # the watcher's status is on its way
            return
        if info is None:
            return  # not waitable yet: wait for the next wake-up
        signalled = info.si_code in (os.CLD_KILLED, os.CLD_DUMPED)
        settle(-info.si_status if signalled else info.si_status)

    def on_waited(_: asyncio.Future[int]) -> None:
        if not status.done():
            settle(None)

    loop.add_reader(pidfd, on_exit)
    waited.add_done_callback(on_waited)
    status.add_done_callback(lambda _: unwatch())  # also when the caller gives up on it
    return status


def _pass_on(status: asyncio.Future[int], waited: asyncio.Future[int]) -> None:
    if not status.done():
        status.set_result(waited.result())
