"""Pure: classify a finished sandbox phase into DESIGN.md's terminal states and `limit` values."""

from __future__ import annotations

import enum
import os
import signal as _signal
from dataclasses import dataclass

from streams.states import Limit, State


class KillReason(enum.StrEnum):
    """Why the supervisor itself killed the run's cgroup."""

    CANCELLED = "cancelled"
    OUTPUT = "output"
    CPU_TIME = "cpu_time"
    WALL_TIME = "wall_time"


@dataclass(frozen=True, slots=True)
class Evidence:
    """Everything observed about one phase; all the classifier needs."""

    returncode: int | None  # bubblewrap's, as the OS reported it (negative: killed by that signal)
    setup_error: str | None = None  # bubblewrap failed before running the program
    kill_reason: KillReason | None = None
    oom_kills: int = 0
    pids_max_hits: int = 0
    disk_full: bool = False
    cpu_time_ns: int = 0
    cpu_limit_ns: int = 0
    # The program's raw wait(2) status, as the sandbox's init (runtime/sandbox_exec.c, --init)
    # reported it out of band; None when it reported none (killed with the run, or no init).
    wait_status: int | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    state: State
    limit: Limit | None
    exit_code: int | None
    signal: int | None
    error: str | None = None


def decode_status(returncode: int | None) -> tuple[int | None, int | None]:
    """(exit_code, signal) from bubblewrap's own status, which is only a shell-style guess.

    bubblewrap reports a program killed by signal N as exit 128 + N, and a program that exits
    with 128 + N the same way. Only a caller that knows a kill happened (its own, or the
    kernel's OOM killer) may read it as a signal: `decode_killed`.
    """
    if returncode is None:
        return None, None
    if returncode < 0:
        return None, -returncode
    return returncode, None


def decode_killed(returncode: int | None) -> tuple[int | None, int | None]:
    """(exit_code, signal) of a run known to have been killed: 128 + N is signal N."""
    if returncode is not None and 128 < returncode <= 128 + 64:
        return None, returncode - 128
    return decode_status(returncode)


def decode_wait_status(status: int) -> tuple[int | None, int | None]:
    """(exit_code, signal) from a raw wait(2) status: exact, as the kernel gave it."""
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status), None
    if os.WIFSIGNALED(status):
        return None, os.WTERMSIG(status)
    return None, None


def program_status(e: Evidence) -> tuple[int | None, int | None]:
    """The program's (exit_code, signal): the init's report when there is one, else bubblewrap's
    status, read as a signal only when a kill is known to have happened."""
    if e.wait_status is not None:
        return decode_wait_status(e.wait_status)
    if e.kill_reason is not None or e.oom_kills > 0:
        return decode_killed(e.returncode)
    return decode_status(e.returncode)


def classify(e: Evidence) -> Verdict:
    exit_code, sig = program_status(e)
    if e.setup_error is not None:
        return Verdict(State.ERROR, None, None, None, e.setup_error)
    if e.kill_reason is KillReason.CANCELLED:
        return Verdict(State.CANCELLED, None, exit_code, sig)
    if e.kill_reason is KillReason.OUTPUT:
        return Verdict(State.LIMIT_EXCEEDED, Limit.OUTPUT, exit_code, sig)
    if e.kill_reason is None and exit_code == 0:
        return Verdict(State.SUCCEEDED, None, 0, None)
    # The run did not succeed: name the limit that explains it, most specific first.
    limit: Limit | None = None
    if e.oom_kills > 0:
        limit = Limit.MEMORY
    elif e.disk_full:  # RLIMIT_FSIZE is the disk limit too: past it, the run's tmpfs is full as well
        limit = Limit.DISK
    elif e.pids_max_hits > 0:
        limit = Limit.PROCESSES
    elif e.kill_reason is KillReason.CPU_TIME or (
        # RLIMIT_CPU (our backstop) signals SIGXCPU, then SIGKILL: a limit only if the CPU was
        # really used up. A program that sent itself either signal, or ended by itself whatever
        # CPU it used, did not hit a limit.
        sig in (_signal.SIGXCPU, _signal.SIGKILL) and e.cpu_limit_ns > 0 and e.cpu_time_ns >= e.cpu_limit_ns
    ):
        limit = Limit.CPU_TIME
    elif e.kill_reason is KillReason.WALL_TIME:
        limit = Limit.WALL_TIME
    if limit is not None:
        return Verdict(State.LIMIT_EXCEEDED, limit, exit_code, sig)
    return Verdict(State.FAILED, None, exit_code, sig)
