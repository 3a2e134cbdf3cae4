"""runtime.reaper.exited: a child's exit status through a pidfd, the reaping left to asyncio's watcher."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import sys

import pytest

from runtime.reaper import exited


async def _child(code: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(sys.executable, "-S", "-c", code, stdin=asyncio.subprocess.PIPE)


def _pidfds() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[pidfd]"
        except FileNotFoundError:
            continue  # the listing's own fd
    return count


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("pass", 0),
        ("import os; os._exit(3)", 3),
        ("raise SystemExit(255)", 255),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", -signal.SIGKILL),
        ("import os, signal; signal.signal(signal.SIGTERM, signal.SIG_DFL); os.kill(os.getpid(), signal.SIGTERM)", -15),
    ],
)
async def test_the_status_is_the_one_asyncio_reports(code: str, status: int) -> None:
    proc = await _child(code)
    assert await asyncio.wait_for(exited(proc), 10) == status
    # The child is still asyncio's to reap: its own wait ends with the same status.
    assert await asyncio.wait_for(proc.wait(), 10) == status


async def test_a_child_reaped_already_gets_the_watchers_status() -> None:
    proc = await _child("import os; os._exit(7)")
    assert await asyncio.wait_for(proc.wait(), 10) == 7
    assert await asyncio.wait_for(exited(proc), 10) == 7


async def test_a_running_child_is_not_reported_until_it_ends() -> None:
    proc = await _child("import sys; sys.stdin.buffer.read(); raise SystemExit(4)")
    status = exited(proc)
    await asyncio.sleep(0.2)
    assert not status.done()
    proc.kill()
    assert await asyncio.wait_for(status, 10) == -signal.SIGKILL
    await proc.wait()


async def test_giving_up_on_it_stops_watching() -> None:
    proc = await _child("import time; time.sleep(30)")
    before = _pidfds()
    status = exited(proc)
    assert _pidfds() == before + 1
    status.cancel()
    await asyncio.sleep(0)
    assert _pidfds() == before
    proc.kill()
    assert await asyncio.wait_for(proc.wait(), 10) == -signal.SIGKILL


async def test_the_pidfd_is_closed_once_the_status_is_known() -> None:
    proc = await _child("pass")
    before = _pidfds()
    assert await asyncio.wait_for(exited(proc), 10) == 0
    assert _pidfds() == before
    await proc.wait()


async def test_without_waitid_on_pidfds_the_watchers_status_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kernel 5.3 has pidfd_open but not waitid(P_PIDFD): EINVAL, then the watcher's status, no spin."""
    calls = []

    def no_waitid(*args: object) -> None:
        calls.append(args)
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "waitid", no_waitid)
    proc = await _child("import os; os._exit(5)")
    assert await asyncio.wait_for(exited(proc), 10) == 5
    assert len(calls) == 1 and _pidfds() == 0


async def test_without_pidfds_it_is_the_watchers_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "P_PIDFD")
    proc = await _child("import os; os._exit(6)")
    status = exited(proc)
    assert _pidfds() == 0
    assert await asyncio.wait_for(status, 10) == 6
