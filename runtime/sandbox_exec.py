"""The sandbox-exec helper: joins the run's cgroups, sets rlimits, drops to the run's uid, execs bubblewrap.

Spawning bubblewrap through this helper instead of a Python `preexec_fn` lets CPython start the
child with vfork(): no copy of the supervisor's address space, no Python code in a forked child,
and the event loop is blocked for a fraction of the time (bench/README.md has the measurement).

The helper is built from `sandbox_exec.c` next to this file with the host's C compiler, into a
root-owned directory outside any sandbox, under a name carrying the source's hash (a changed
source builds a new binary). `ensure()` builds it when missing; when no compiler is available it
returns None and the backend falls back to the `preexec_fn` path (same isolation, slower spawn).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import structlog

log = structlog.get_logger()

SOURCE = Path(__file__).with_name("sandbox_exec.c")
DEFAULT_DIR = "/var/cache/aevatar-sandbox/bin"
CFLAGS = ("-O2", "-static", "-Wall", "-Wextra", "-Werror", "-D_FORTIFY_SOURCE=2", "-fstack-protector-strong")


def binary_path(directory: str = DEFAULT_DIR) -> str:
    digest = hashlib.sha256(SOURCE.read_bytes() + " ".join(CFLAGS).encode()).hexdigest()[:16]
    return os.path.join(directory, f"sandbox-exec-{digest}")


def trusted(path: str) -> bool:
    """Root-owned, not writable by group or others: the helper runs as root until it drops."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return st.st_uid == 0 and not st.st_mode & 0o022 and os.access(path, os.X_OK)


def build(directory: str = DEFAULT_DIR, compiler: str | None = None) -> str:
    """Compile the helper into `directory` (atomically) and return its path; raises on failure."""
    cc = compiler or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise FileNotFoundError("no C compiler (cc or gcc) on PATH")
    os.makedirs(directory, mode=0o755, exist_ok=True)
    os.chmod(directory, 0o755)
    target = binary_path(directory)
    fd, tmp = tempfile.mkstemp(prefix=".sandbox-exec-", dir=directory)
    os.close(fd)
    try:
        subprocess.run([cc, *CFLAGS, "-o", tmp, str(SOURCE)], check=True, capture_output=True, timeout=120, text=True)
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"cannot build sandbox-exec: {exc.stderr.strip()}") from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def runs(path: str) -> bool:
    """The helper starts here (e.g. not on a noexec mount): without arguments it prints its usage, exits 127."""
    try:
        done = subprocess.run([path], capture_output=True, timeout=10, env={})
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 127 and done.stderr.startswith(b"sandbox-exec: usage")


def ensure(directory: str = DEFAULT_DIR) -> str | None:
    """The helper's path, built first if missing; None (and a warning) when it cannot be built or run."""
    path = binary_path(directory)
    try:
        if not trusted(path):
            path = build(directory)
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        log.warning("sandbox_exec_unavailable", error=str(exc), fallback="preexec_fn (slower spawn)")
        return None
    if not runs(path):
        log.warning("sandbox_exec_unavailable", error=f"{path} does not run", fallback="preexec_fn (slower spawn)")
        return None
    return path


def argv(
    helper: str,
    parent_pid: int,
    uid: int,
    procs_files: Sequence[str],
    rlimits: Sequence[tuple[int, int, int]],
    program: Sequence[str],
) -> list[str]:
    """The helper's command line for `program` (pure)."""
    out = [helper, str(parent_pid), str(uid), str(uid), str(len(procs_files)), *procs_files, str(len(rlimits))]
    for which, soft, hard in rlimits:
        out += [str(which), str(soft), str(hard)]
    return [*out, "--", *program]


if __name__ == "__main__":
    print(build())
