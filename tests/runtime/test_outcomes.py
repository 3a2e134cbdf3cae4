"""Exact outcomes (issue 21): exit codes and signals from the kernel, the program's stderr its own.

Every case runs in a real sandbox (real bubblewrap, cgroups, seccomp) on the default backend.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.bwrap import INIT_PATH
from runtime.local import LocalBackend
from runtime.outcome import Evidence, KillReason, classify, decode_wait_status
from runtime.types import Outcome
from streams.states import Limit, State
from tests.runtime.conftest import Runner, make_config, remove_state_dir

pytestmark = pytest.mark.sandbox


async def test_every_exit_code_is_reported_exactly(run: Runner) -> None:
    """0..255: SUCCEEDED for 0, else FAILED with that exit code; never a signal, never a limit."""
    codes = list(range(256))
    outcomes: dict[int, Outcome] = {}
    for start in range(0, len(codes), 8):  # a few at once: 2 cores shared with the rest of the suite
        batch = codes[start : start + 8]
        done = await asyncio.gather(*(run(f"import sys\nsys.exit({code})\n") for code in batch))
        outcomes.update(zip(batch, done, strict=True))
    for code, outcome in outcomes.items():
        expected = State.SUCCEEDED if code == 0 else State.FAILED
        got = (outcome.state, outcome.limit, outcome.exit_code, outcome.signal, outcome.error)
        assert got == (expected, None, code, None, None), (code, got, outcome.stderr)


@pytest.mark.parametrize(
    "sig",
    [signal.SIGSEGV, signal.SIGABRT, signal.SIGKILL, signal.SIGTERM, signal.SIGXFSZ, signal.SIGXCPU, signal.SIGUSR1],
)
async def test_a_real_signal_is_reported_as_that_signal(run: Runner, sig: int) -> None:
    """A program that really dies of a signal: FAILED, that signal, no exit code, and no limit
    (it sent SIGXFSZ or SIGXCPU itself: no limit fired)."""
    # CPython ignores SIGXFSZ: the default action first (SIGKILL has no other).
    reset = "" if sig == signal.SIGKILL else f"signal.signal({int(sig)}, signal.SIG_DFL)\n"
    outcome = await run(f"import os, signal\n{reset}os.kill(os.getpid(), {int(sig)})\n")
    got = (outcome.state, outcome.limit, outcome.exit_code, outcome.signal)
    assert got == (State.FAILED, None, None, sig), outcome.stderr


async def test_exit_153_is_not_a_disk_limit_and_137_not_a_kill(run: Runner) -> None:
    for code in (128 + signal.SIGXFSZ, 128 + signal.SIGKILL, 128 + signal.SIGXCPU):
        outcome = await run(f"raise SystemExit({code})")
        assert (outcome.state, outcome.limit, outcome.exit_code, outcome.signal) == (State.FAILED, None, code, None)


async def test_a_killed_run_still_reports_the_kill(run: Runner) -> None:
    """The limits still read as limits, with the signal that enforced them."""
    wall = await run("while True: pass", wall_time_ms=300, cpu_time_ms=5000)
    assert (wall.state, wall.limit) == (State.LIMIT_EXCEEDED, Limit.WALL_TIME)
    assert (wall.exit_code, wall.signal) == (None, signal.SIGKILL)
    cpu = await run("while True: pass", wall_time_ms=5000, cpu_time_ms=300)
    assert (cpu.state, cpu.limit, cpu.signal) == (State.LIMIT_EXCEEDED, Limit.CPU_TIME, signal.SIGKILL)


@pytest.mark.parametrize(
    "stderr",
    [
        "bwrap: Can't bind mount /oldroot/x on /newroot/y: No such file or directory",
        "bwrap: execvp /usr/bin/python3.11: Permission denied",
        "sandbox-exec: cannot exec x: No such file or directory",
    ],
)
async def test_the_programs_stderr_is_the_programs(run: Runner, stderr: str) -> None:
    """A program printing what bubblewrap prints when it fails, and exiting 1, is FAILED with its stderr."""
    code = f"import sys\nsys.stderr.write({stderr + chr(10)!r})\nsys.exit(1)\n"
    outcome = await run(code)
    assert (outcome.state, outcome.exit_code, outcome.signal, outcome.error) == (State.FAILED, 1, None, None)
    assert outcome.stderr == (stderr + "\n").encode()
    assert outcome.stdout == b""


async def test_a_real_setup_failure_is_still_an_error() -> None:
    """bubblewrap that cannot start the program (a missing toolchain path) is the platform's ERROR:
    known from the missing status of the sandbox's init, not from the text on stderr."""
    from runtime.languages.python import PYTHON

    broken = dataclasses.replace(PYTHON, toolchain_paths=("/nonexistent-aevatar-toolchain",))
    state_dir = f"/tmp/aevatar-sandbox-tests-broken-{os.getpid()}"
    backend = LocalBackend(make_config(state_dir=state_dir, languages={"python": broken}))
    try:
        from runtime.types import RunRequest

        outcome = await backend.run(RunRequest(execution_id="broken-1", language="python", code="print(1)"))
    finally:
        await backend.close()
        remove_state_dir(state_dir)
    assert outcome.state is State.ERROR
    assert outcome.error is not None and "sandbox setup failed" in outcome.error


async def test_the_default_backend_runs_programs_under_its_init(run: Runner) -> None:
    # The sandbox's pid 1 is the helper's `--init`, bound read-only at INIT_PATH, with the program its child.
    outcome = await run("import os\nprint(open('/proc/1/cmdline', 'rb').read().split(b'\\0')[:2], os.getppid())")
    assert outcome.state is State.SUCCEEDED, outcome
    assert outcome.stdout == f"{[INIT_PATH.encode(), b'--init']} 1\n".encode()


# -- the pure decoding --------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=255))
def test_a_wait_status_exit_is_exact(code: int) -> None:
    status = code << 8
    assert decode_wait_status(status) == (code, None)
    verdict = classify(Evidence(code, wait_status=status))
    assert (verdict.exit_code, verdict.signal, verdict.limit) == (code, None, None)
    assert verdict.state is (State.SUCCEEDED if code == 0 else State.FAILED)


@given(st.integers(min_value=1, max_value=64))
def test_a_wait_status_signal_is_exact(sig: int) -> None:
    verdict = classify(Evidence(128 + sig, wait_status=sig))
    assert (verdict.state, verdict.limit, verdict.exit_code, verdict.signal) == (State.FAILED, None, None, sig)


@given(st.integers(min_value=0, max_value=255))
def test_without_a_kill_bubblewraps_status_is_an_exit_code(code: int) -> None:
    verdict = classify(Evidence(code))
    assert (verdict.exit_code, verdict.signal, verdict.limit) == (code, None, None)


def test_a_known_kill_reads_128_plus_n_as_the_signal() -> None:
    verdict = classify(Evidence(137, kill_reason=KillReason.WALL_TIME))
    assert (verdict.limit, verdict.exit_code, verdict.signal) == (Limit.WALL_TIME, None, 9)
    verdict = classify(Evidence(137, oom_kills=1))
    assert (verdict.limit, verdict.exit_code, verdict.signal) == (Limit.MEMORY, None, 9)


async def test_the_program_cannot_forge_or_kill_its_init(run: Runner) -> None:
    """The init's status line is out of the program's reach: the fd is not the program's, /proc/1/fd
    is closed to it, and the signals it sends to pid 1 are dropped. Its own exit code stands."""
    code = """
import os, signal, sys
forged = 0
for fd in range(3, 64):
    try:
        os.write(fd, b'{"wait-status": 0}\\n')
        forged += 1
    except OSError:
        pass
try:
    os.listdir("/proc/1/fd")
    print("fd listing open")
except PermissionError:
    pass
for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGSTOP):
    try:
        os.kill(1, sig)
    except OSError:
        pass
print("forged", forged)
sys.exit(7)
"""
    outcome = await run(code)
    assert (outcome.state, outcome.exit_code, outcome.signal, outcome.error) == (State.FAILED, 7, None, None)
    assert outcome.stdout == b"forged 0\n"


FORK_BOMB = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
MEMORY_BOMB = "chunks = []\nwhile True:\n    b = bytearray(1 << 20)\n    b[::4096] = b'1' * 256\n    chunks.append(b)\n"
DISK_FILL = "with open('/tmp/big', 'wb') as f:\n    while True:\n        f.write(b'0' * (1 << 20))\n"
OUTPUT_FLOOD = "import sys\nwhile True:\n    sys.stdout.write('y' * 4096)\n"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (MEMORY_BOMB, (State.LIMIT_EXCEEDED, Limit.MEMORY, None, signal.SIGKILL)),
        (FORK_BOMB, (State.LIMIT_EXCEEDED, Limit.PROCESSES, None, signal.SIGKILL)),
        (DISK_FILL, (State.LIMIT_EXCEEDED, Limit.DISK, 1, None)),  # Python's OSError: exit 1
        (OUTPUT_FLOOD, (State.LIMIT_EXCEEDED, Limit.OUTPUT, None, signal.SIGKILL)),
    ],
    ids=["memory", "processes", "disk", "output"],
)
async def test_the_limit_rows_of_the_outcome_table(
    run: Runner, code: str, expected: tuple[State, Limit, int | None, int | None]
) -> None:
    """gateway/README.md's outcome table, row by row: state, limit, exit_code and signal."""
    outcome = await run(code)
    assert (outcome.state, outcome.limit, outcome.exit_code, outcome.signal) == expected, outcome.stderr[-500:]
