"""Pure: classify a finished sandbox phase into DESIGN.md's terminal states and `limit` values."""

from __future__ import annotations

import enum
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


@dataclass(frozen=True, slots=True)
class Verdict:
    state: State
    limit: Limit | None
    exit_code: int | None
    signal: int | None
    error: str | None = None


def decode_status(returncode: int | None) -> tuple[int | None, int | None]:
    """(exit_code, signal). bubblewrap reports a program killed by signal N as exit 128 + N."""
    if returncode is None:
        return None, None
    if returncode < 0:
        return None, -returncode
    if 128 < returncode <= 128 + 64:
        return None, returncode - 128
    return returncode, None


def classify(e: Evidence) -> Verdict:
    exit_code, sig = decode_status(e.returncode)
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
    elif e.disk_full or sig == _signal.SIGXFSZ:
        limit = Limit.DISK
    elif e.pids_max_hits > 0:
        limit = Limit.PROCESSES
    elif (
        e.kill_reason is KillReason.CPU_TIME
        or sig == _signal.SIGXCPU
        or (e.cpu_limit_ns > 0 and e.cpu_time_ns >= e.cpu_limit_ns)
    ):
        limit = Limit.CPU_TIME
    elif e.kill_reason is KillReason.WALL_TIME:
        limit = Limit.WALL_TIME
    if limit is not None:
        return Verdict(State.LIMIT_EXCEEDED, limit, exit_code, sig)
    return Verdict(State.FAILED, None, exit_code, sig)


def looks_like_setup_failure(returncode: int | None, stdout: bytes, stderr: bytes) -> str | None:
    """bubblewrap's own failure: exit 1, nothing on stdout, and one `bwrap: ` line on stderr."""
    if returncode != 1 or stdout or not stderr.startswith(b"bwrap: ") or len(stderr) > 4096:
        return None
    if stderr.rstrip(b"\n").count(b"\n") != 0:
        return None
    return "sandbox setup failed: " + stderr.decode("utf-8", "replace").strip()
