"""The local backend as the pipeline sees it: contract, streaming, cancel, compile, concurrency, refusal."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from runtime.languages import LANGUAGES, SOURCE, Language
from runtime.local import LocalBackend
from runtime.types import Backend, Limits, OutputChunk, RunRequest
from streams.states import Limit, State
from tests.runtime.conftest import SMALL, Runner, make_config, next_id, sandbox_uid_processes

pytestmark = pytest.mark.sandbox

# A compiled language as pure data, to exercise the compile phase: py_compile produces an
# artifact in the working directory, and the run phase executes that artifact.
PYC = Language(
    name="python-bytecode",
    source_file="main.py",
    compile=("/usr/bin/python3.11", "-I", "-S", "-c",
             "import py_compile; py_compile.compile('main.py', cfile='main.pyc', doraise=True)"),
    run=("/usr/bin/python3.11", "-I", "-S", "main.pyc"),
    version_probe=("/usr/bin/python3.11", "--version"),
    toolchain_paths=LANGUAGES["python"].toolchain_paths,
    self_test_code="import sys\nsys.stdout.write(sys.stdin.read())\n",
    self_test_stdin=b"bytecode\n",
    self_test_expected_stdout=b"bytecode\n",
    compile_limits=Limits(wall_time_ms=3000, cpu_time_ms=3000, memory_mib=128, processes=16, output_bytes=4096,
                          disk_mib=8),
)  # fmt: skip
assert SOURCE


def test_local_backend_satisfies_the_protocol(backend: LocalBackend) -> None:
    b: Backend = backend
    assert b is backend


@pytest.mark.parametrize("name", sorted(LANGUAGES))
async def test_language_self_test(backend: LocalBackend, name: str) -> None:
    lang = LANGUAGES[name]
    outcome = await backend.run(RunRequest(next_id("self"), name, lang.self_test_code, stdin=lang.self_test_stdin))
    assert outcome.state is State.SUCCEEDED, outcome
    assert outcome.stdout == lang.self_test_expected_stdout


async def test_languages_report_the_probed_version(backend: LocalBackend) -> None:
    infos = {i.name: i for i in await backend.languages()}
    assert infos["python"].available and infos["python"].version == "3.11.2" and not infos["python"].compiled


async def test_outcome_fields_of_an_ordinary_run(run: Runner) -> None:
    began = time.monotonic()
    outcome = await run("import sys\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(3)")
    observed_ms = (time.monotonic() - began) * 1000
    assert outcome.state is State.FAILED and outcome.exit_code == 3 and outcome.signal is None
    assert outcome.stdout == b"out\n" and outcome.stderr == b"err\n" and outcome.limit is None
    # run_ms is the run's own wall time: more than nothing, within what the caller saw, and within the
    # wall limit it was not stopped by (how long it is: bench/limits.py and the bench's floor).
    assert outcome.cpu_time_ms >= 1 and outcome.memory_peak_kib > 1000
    assert 0 < outcome.run_ms <= observed_ms + 1 and outcome.run_ms < SMALL.wall_time_ms
    assert outcome.compile_ms == 0 and outcome.compile_output == b"" and outcome.error is None


async def test_killed_by_a_signal_is_failed_with_the_signal(run: Runner) -> None:
    outcome = await run("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)")
    assert outcome.state is State.FAILED and outcome.signal == 11 and outcome.exit_code is None


async def test_streaming_chunks_have_byte_offsets(run: Runner) -> None:
    code = "import sys, time\nfor i in range(5):\n"
    code += "    sys.stdout.write(f'line {i}\\n'); sys.stdout.flush(); time.sleep(0.05)"
    outcome = await run(code)
    assert outcome.state is State.SUCCEEDED
    chunks = [c for c in run.chunks if c.stream == "stdout"]
    assert len(chunks) >= 2  # it streamed while the run went on
    offset = 0
    for chunk in chunks:
        assert chunk.offset == offset
        offset += len(chunk.data)
    assert b"".join(c.data for c in chunks) == outcome.stdout


async def test_cancel_a_running_execution(backend: LocalBackend) -> None:
    eid = next_id("cancel")
    started = asyncio.Event()

    async def on_output(chunk: OutputChunk) -> None:
        started.set()

    task = asyncio.ensure_future(
        backend.run(
            RunRequest(
                eid,
                "python",
                "import time\nprint('go', flush=True)\ntime.sleep(30)",
                limits=Limits(wall_time_ms=20_000),
            ),
            on_output,
        )
    )
    await asyncio.wait_for(started.wait(), 5)
    assert await backend.cancel(eid) is True
    outcome = await asyncio.wait_for(task, 5)
    assert outcome.state is State.CANCELLED and outcome.limit is None
    assert await backend.cancel(eid) is False
    assert await backend.cancel("never-ran") is False


async def test_compile_phase_success_and_compile_error() -> None:
    backend = LocalBackend(make_config(languages={"python-bytecode": PYC}))
    try:
        ok = await Runner(backend)(
            "import sys\nprint('compiled', sys.argv[1:])", language="python-bytecode", args=("x",)
        )
        assert ok.state is State.SUCCEEDED and ok.stdout == b"compiled ['x']\n"
        assert ok.compile_ms > 0 and ok.compile_output == b""
        bad = await Runner(backend)("def broken(:\n", language="python-bytecode")
        assert bad.state is State.COMPILE_ERROR and bad.limit is None
        assert b"SyntaxError" in bad.compile_output and bad.stdout == b""
        infos = await backend.languages()
        assert infos[0].compiled and infos[0].available
    finally:
        await backend.close()


async def test_twenty_concurrent_runs_are_independent(backend: LocalBackend) -> None:
    code = "import sys, os, time\ndata = sys.stdin.read()\ntime.sleep(0.2)\nopen('/tmp/me', 'w').write(data)\n"
    code += "print(data, sorted(os.listdir('/tmp')), open('/tmp/me').read() == data)"
    requests = [RunRequest(next_id("conc"), "python", code, stdin=f"run-{i}".encode(), limits=SMALL) for i in range(20)]
    outcomes = await asyncio.gather(*(backend.run(r) for r in requests))
    for i, outcome in enumerate(outcomes):
        assert outcome.state is State.SUCCEEDED, outcome
        assert outcome.stdout == f"run-{i} ['me'] True\n".encode()


async def test_posture_seen_from_outside(backend: LocalBackend) -> None:
    marker = f"posture-marker-{os.getpid()}"
    ready = asyncio.Event()

    async def on_output(chunk: OutputChunk) -> None:
        ready.set()

    eid = next_id("posture")
    task = asyncio.ensure_future(
        backend.run(
            RunRequest(
                eid,
                "python",
                "import time\nprint('ready', flush=True)\ntime.sleep(20)",
                args=(marker,),
                limits=Limits(wall_time_ms=10_000),
            ),
            on_output,
        )
    )
    try:
        await asyncio.wait_for(ready.wait(), 5)
        pids = []
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    with open(f"/proc/{name}/cmdline", "rb") as f:
                        cmd = f.read().split(b"\0")
                    with open(f"/proc/{name}/comm") as f:
                        comm = f.read().strip()
                except OSError:
                    continue
                if marker.encode() in cmd and comm.startswith("python"):
                    pids.append(int(name))
        assert len(pids) == 1
        pid = pids[0]
        for ns in ("user", "pid", "net", "ipc", "uts", "cgroup", "mnt"):
            assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"), ns
        with open(f"/proc/{pid}/status") as f:
            status = dict(line.split(":", 1) for line in f.read().splitlines())
        for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(status[cap].strip(), 16) == 0, cap
        assert status["NoNewPrivs"].strip() == "1" and status["Seccomp"].strip() == "2"
        host_uid = int(status["Uid"].split()[0])
        assert 61000 <= host_uid < 61000 + 24
        assert sorted(int(fd) for fd in os.listdir(f"/proc/{pid}/fd")) == [0, 1, 2]
    finally:
        await backend.cancel(eid)
        outcome = await task
    assert outcome.state is State.CANCELLED


async def test_refuses_to_run_when_a_required_feature_is_missing() -> None:
    backend = LocalBackend(make_config(bwrap_path="/nonexistent/bwrap"))
    try:
        outcome = await Runner(backend)("print('must not run')")
        assert outcome.state is State.ERROR and outcome.stdout == b""
        assert outcome.error is not None and "refusing to run code" in outcome.error
        assert "bubblewrap" in outcome.error and "namespace.pid" in outcome.error
    finally:
        await backend.close()


async def test_refuses_unknown_features_rather_than_running_weaker() -> None:
    required = make_config().require_features | {"cgroup.io"}
    backend = LocalBackend(make_config(require_features=required))
    try:
        outcome = await Runner(backend)("print('must not run')")
        assert outcome.state is State.ERROR and outcome.error is not None and "cgroup.io" in outcome.error
    finally:
        await backend.close()


async def test_unknown_language_and_bad_file_names_are_errors(run: Runner) -> None:
    """The backend refuses what validation lets no submission bring it (ERROR: something skipped
    the validation); the submission itself is REJECTED, naming the field (processors/rules.py)."""
    from processors.policy import DEFAULT_POLICY
    from processors.rules import Rejection, validate
    from runtime.languages import LANGUAGES
    from streams.records import ExecutionRequest

    assert (await run("x", language="cobol")).state is State.ERROR
    for name in ("../escape", "/abs", "a/../b", "", "main.py", "a%2Fb/../c", "x\n"):
        outcome = await run("print(1)", files={name: "x"})
        assert outcome.state is State.ERROR, name
        verdict = validate(ExecutionRequest(id="v1", language="python", code="1", files={name: "x"}),
                           DEFAULT_POLICY, set(LANGUAGES))  # fmt: skip
        assert isinstance(verdict, Rejection) and verdict.field == f"files.{name}", name


@pytest.mark.parametrize("mode", ["auto", "v1"])
async def test_both_cgroup_paths_contain_and_clean_up(mode: str) -> None:
    """auto: v1 controllers + v2 unified tracking and cgroup.kill; v1: v1 only, freezer kill."""
    backend = LocalBackend(make_config(cgroup_mode=mode))
    try:
        runner = Runner(backend)
        orphan = "import os, time\nif os.fork() == 0:\n    os.setsid(); time.sleep(60)\ntime.sleep(60)"
        wall = await runner(orphan, wall_time_ms=500)
        assert wall.state is State.LIMIT_EXCEEDED and wall.limit is Limit.WALL_TIME
        bomb = await runner(
            "import os\nwhile True:\n    try: os.fork()\n    except OSError: pass", cpu_time_ms=500, wall_time_ms=1500
        )
        assert bomb.state is State.LIMIT_EXCEEDED and bomb.limit is Limit.PROCESSES
        mem = await runner("x = []\nwhile True: x.append(b'a' * (1 << 20))")
        assert mem.state is State.LIMIT_EXCEEDED and mem.limit is Limit.MEMORY
        assert sandbox_uid_processes() == []
        layout = backend._layout
        assert layout is not None
        assert ("v2" if layout.v2_dir else "v1") == ("v1" if mode == "v1" else "v2")
    finally:
        await backend.close()
