"""The sandbox-exec helper: the privileged last step before bubblewrap, built from C and exec'd (vfork)."""

from __future__ import annotations

import os
import resource
import subprocess
from pathlib import Path

import pytest

from runtime import sandbox_exec
from runtime.local import LocalBackend
from streams.states import State
from tests.runtime.conftest import SMALL, Runner, make_config

HELPER_UID = 61990  # outside every backend range of the runtime suite


@pytest.fixture(scope="module")
def helper(tmp_path_factory: pytest.TempPathFactory) -> str:
    directory = tmp_path_factory.mktemp("helper")
    os.chmod(directory, 0o755)
    return sandbox_exec.build(str(directory))


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, env={}, timeout=10)


def test_argv_is_counted_and_separated() -> None:
    procs = ["/a/cgroup.procs", "/b/cgroup.procs"]
    argv = sandbox_exec.argv("/h", 7, 61000, procs, [(4, 0, 0), (7, 256, 256)], ["/usr/bin/bwrap", "--x"])
    assert argv == [
        "/h", "7", "61000", "61000", "2", *procs, "2", "4", "0", "0", "7", "256", "256", "--", "/usr/bin/bwrap", "--x"
    ]  # fmt: skip


def test_drops_every_id_and_sets_the_rlimits(helper: str) -> None:
    limits = [(resource.RLIMIT_NOFILE, 37, 37), (resource.RLIMIT_CORE, 0, 0)]
    script = "id -u; id -g; id -G; ulimit -n; ulimit -c; grep -E '^(Uid|Gid|Groups|CapEff):' /proc/self/status"
    res = _run(sandbox_exec.argv(helper, os.getpid(), HELPER_UID, [], limits, ["/bin/sh", "-c", script]))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[:5] == [str(HELPER_UID), str(HELPER_UID), str(HELPER_UID), "37", "0"]
    status = dict(line.split(":", 1) for line in lines[5:])
    assert status["Uid"].split() == [str(HELPER_UID)] * 4 and status["Gid"].split() == [str(HELPER_UID)] * 4
    assert status["Groups"].strip() == "" and int(status["CapEff"].strip(), 16) == 0


@pytest.mark.parametrize(
    ("uid", "procs", "parent", "message"),
    [
        (0, [], None, "refusing to run the sandbox as root"),
        (HELPER_UID, ["/nonexistent/cgroup.procs"], None, "cannot open /nonexistent/cgroup.procs"),
        (HELPER_UID, [], 1, "supervisor gone before the exec"),  # not our parent: as if the supervisor died
    ],
)
def test_refuses_before_the_exec(helper: str, uid: int, procs: list[str], parent: int | None, message: str) -> None:
    argv = sandbox_exec.argv(helper, parent or os.getpid(), uid, procs, [], ["/bin/echo", "must not run"])
    res = _run(argv)
    assert res.returncode == 127 and res.stdout == ""
    assert res.stderr.startswith("sandbox-exec: ") and message in res.stderr


def test_malformed_command_lines_are_refused(helper: str) -> None:
    for argv in (
        [helper],
        [helper, str(os.getpid()), "x", "1", "0", "0", "--", "/bin/true"],
        [helper, str(os.getpid()), "61990", "61990", "0", "0", "/bin/true"],  # no --
        [helper, str(os.getpid()), "61990", "61990", "99", "0", "--", "/bin/true"],
        [helper, str(os.getpid()), "61990", "61990", "0", "1", "7", "1", "--", "/bin/true"],  # short rlimit
        [helper, str(os.getpid()), "61990", "61990", "0", "0", "--"],  # no program
    ):
        res = _run(argv)
        assert res.returncode == 127 and res.stderr.startswith("sandbox-exec: "), argv


def test_an_untrusted_binary_is_rebuilt(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o755)
    path = sandbox_exec.binary_path(str(tmp_path))
    Path(path).write_text("#!/bin/sh\necho planted\n")
    os.chmod(path, 0o777)  # writable by anyone: must never be run as root
    assert sandbox_exec.ensure(str(tmp_path)) == path
    assert os.stat(path).st_mode & 0o777 == 0o755
    assert b"planted" not in Path(path).read_bytes()


def test_the_default_backend_uses_the_helper(backend: LocalBackend) -> None:
    assert backend._helper is not None and os.path.basename(backend._helper).startswith("sandbox-exec-")


async def test_without_the_helper_the_preexec_path_still_isolates() -> None:
    backend = LocalBackend(make_config(sandbox_exec_dir=None))
    try:
        runner = Runner(backend)
        ok = await runner("import os\nprint(os.getuid(), os.getpid() < 5)")
        assert ok.state is State.SUCCEEDED and ok.stdout == b"1000 True\n"
        bomb = await runner(
            "import os\nwhile True:\n    try: os.fork()\n    except OSError: pass",
            cpu_time_ms=SMALL.cpu_time_ms,
            wall_time_ms=SMALL.wall_time_ms,
        )
        assert bomb.state is State.LIMIT_EXCEEDED
        assert backend._helper is None
    finally:
        await backend.close()


def test_a_helper_that_does_not_run_is_not_used(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o755)
    path = sandbox_exec.binary_path(str(tmp_path))
    Path(path).write_text("#!/bin/sh\nexit 0\n")  # root-owned, 0755, but not the helper
    os.chmod(path, 0o755)
    assert sandbox_exec.trusted(path) and not sandbox_exec.runs(path)
    assert sandbox_exec.ensure(str(tmp_path)) is None  # the backend then spawns through preexec_fn
