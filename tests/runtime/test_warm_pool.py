"""The warm pool: single use, teardown after the run, cold fallback on a miss, isolation as a cold run.

These run real bubblewrap sandboxes. No timing is asserted: only what ran where, and what is left.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator

import pytest

from runtime.local import LocalBackend
from runtime.metrics import warm_pool_count
from runtime.types import Limits, RunRequest
from runtime.warm_pool import PoolKey, WarmPoolConfig, payload, target_size
from streams.states import Limit, State
from tests.runtime.conftest import MAX_SLOTS, SMALL, UID_BASE, make_config, next_id, remove_state_dir

pytestmark = pytest.mark.sandbox

POOL = WarmPoolConfig(size=1, max_size=2, languages=("python", "javascript"), limits=SMALL, max_total=4)
# Its own cgroup prefix and state dir: the session backend of the other tests runs beside this one.
POOL_TAG = f"{os.getpid()}-pool"


@pytest.fixture(scope="module")
async def pooled() -> AsyncIterator[LocalBackend]:
    config = make_config(
        state_dir=f"/tmp/aevatar-sandbox-tests-{POOL_TAG}",
        cgroup_prefix=f"aevatar-sandbox-test-{POOL_TAG}",
        uid_base=UID_BASE + MAX_SLOTS + 8,  # clear of the session backend's slot and pool uids
        max_slots=4,
        warm_pool=POOL,
    )
    backend = LocalBackend(config)
    await backend.check()
    yield backend
    await backend.close()
    assert not os.listdir(os.path.join(config.state_dir, "runs"))  # every sandbox, idle or used, is gone
    remove_state_dir(config.state_dir)


def _request(code: str, *, language: str = "python", limits: Limits = SMALL, **fields: object) -> RunRequest:
    return RunRequest(next_id("warm"), language, code, limits=limits, **fields)  # type: ignore[arg-type]


async def _idle_one(backend: LocalBackend, language: str = "python") -> object:
    pool = backend.pool
    assert pool is not None
    key = PoolKey(language, SMALL)
    assert await pool.wait_filled(key, 1, timeout_s=60)
    return pool.idle(key)[0]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_a_warm_sandbox_runs_one_program_and_is_then_destroyed(pooled: LocalBackend) -> None:
    sandbox = await _idle_one(pooled)
    pid = sandbox.spawned.proc.pid  # type: ignore[attr-defined]
    workspace = sandbox.ws.root  # type: ignore[attr-defined]
    cgroups = list(sandbox.cg.dirs.values())  # type: ignore[attr-defined]
    assert _alive(pid) and os.path.isdir(workspace) and all(os.path.isdir(d) for d in cgroups)
    hits = warm_pool_count("python", hit=True)

    outcome = await pooled.run(_request("import sys\nprint('warm', sys.argv[1:])", args=("a b", "")))

    assert outcome.state is State.SUCCEEDED, outcome
    assert outcome.stdout == b"warm ['a b', '']\n"
    assert warm_pool_count("python", hit=True) == hits + 1
    await pooled.settled()  # its cgroup and workspace go once the outcome is out
    assert sandbox.uses == 1 and sandbox.destroyed  # type: ignore[attr-defined]
    assert not os.path.exists(workspace)
    assert not any(os.path.exists(d) for d in cgroups)
    await asyncio.sleep(0.2)
    assert not _alive(pid)
    assert sandbox not in pooled.pool.idle(PoolKey("python", SMALL))  # type: ignore[union-attr]


async def test_the_next_run_gets_a_fresh_sandbox_that_saw_nothing_of_the_last(pooled: LocalBackend) -> None:
    first = await _idle_one(pooled)
    leave = "open('/tmp/left', 'w').write('x'); open('/box/left', 'w').write('x'); print('left')"
    assert (await pooled.run(_request(leave))).stdout == b"left\n"
    second = await _idle_one(pooled)
    assert second is not first
    look = "import os\nprint(os.path.exists('/tmp/left'), os.path.exists('/box/left'), sorted(os.listdir('/box')))"
    outcome = await pooled.run(_request(look))
    assert outcome.stdout == b"False False ['main.py']\n", outcome


async def test_a_taken_sandbox_is_never_handed_out_again(pooled: LocalBackend) -> None:
    pool = pooled.pool
    assert pool is not None
    sandbox = await _idle_one(pooled)
    key = PoolKey("python", SMALL)
    taken = pool.take(key)
    assert taken is sandbox
    assert sandbox not in pool.idle(key)
    # Running it through the backend works once; a second program in the same sandbox is refused.
    outcome = await pooled._run_warm(_request("print(1)"), taken, pooled_handle(), None)
    assert outcome.state is State.SUCCEEDED and outcome.stdout == b"1\n"
    second = await pooled.run(_request("print(2)"))
    assert second.state is State.SUCCEEDED  # served by another sandbox (or cold), not by `taken`
    assert taken.uses == 1


def pooled_handle() -> object:
    from runtime.local import _Handle

    return _Handle()


async def test_a_pool_miss_falls_back_to_a_cold_start(pooled: LocalBackend) -> None:
    await _idle_one(pooled)
    misses, hits = warm_pool_count("python", hit=False), warm_pool_count("python", hit=True)
    other = Limits(**{**{f: getattr(SMALL, f) for f in Limits.__dataclass_fields__}, "memory_mib": 96})

    outcome = await pooled.run(_request("print('cold')", limits=other))

    assert outcome.state is State.SUCCEEDED and outcome.stdout == b"cold\n"
    assert warm_pool_count("python", hit=False) == misses + 1
    assert warm_pool_count("python", hit=True) == hits


async def test_an_exhausted_pool_serves_the_rest_cold(pooled: LocalBackend) -> None:
    await _idle_one(pooled)
    hits, misses = warm_pool_count("python", hit=True), warm_pool_count("python", hit=False)
    outcomes = await asyncio.gather(*(pooled.run(_request(f"print({i})")) for i in range(4)))
    assert [o.stdout for o in outcomes] == [f"{i}\n".encode() for i in range(4)]
    assert warm_pool_count("python", hit=True) - hits >= 1
    assert warm_pool_count("python", hit=False) - misses >= 1
    assert (warm_pool_count("python", hit=True) - hits) + (warm_pool_count("python", hit=False) - misses) == 4


async def test_requests_the_pool_cannot_serve_are_not_counted_and_run_cold(pooled: LocalBackend) -> None:
    await _idle_one(pooled)
    before = warm_pool_count("python", hit=True), warm_pool_count("python", hit=False)
    with_files = await pooled.run(_request("print(open('data.txt').read())", files={"data.txt": "f"}))
    assert with_files.stdout == b"f\n"
    assert (warm_pool_count("python", hit=True), warm_pool_count("python", hit=False)) == before


async def test_a_warm_run_keeps_the_limits_of_its_key(pooled: LocalBackend) -> None:
    await _idle_one(pooled)
    hits = warm_pool_count("python", hit=True)
    bomb = "x = []\nwhile True:\n    x.append(bytearray(1 << 20))"
    outcome = await pooled.run(_request(bomb))
    assert warm_pool_count("python", hit=True) == hits + 1
    assert outcome.state is State.LIMIT_EXCEEDED and outcome.limit is Limit.MEMORY, outcome


async def test_a_warm_run_is_isolated_as_a_cold_one(pooled: LocalBackend) -> None:
    await _idle_one(pooled)
    code = (
        "import os, sys\n"
        "s = dict(l.split(':', 1) for l in open('/proc/self/status') if ':' in l)\n"
        "print(s['Uid'].split()[0], s['CapEff'].strip(), s['Seccomp'].strip(), s['NoNewPrivs'].strip())\n"
        "print(sorted(int(f) for f in os.listdir('/proc/self/fd')))\n"
        "print(sys.stdin.read())\n"
    )
    outcome = await pooled.run(_request(code, stdin=b"the user's stdin"))
    lines = outcome.stdout.decode().splitlines()
    assert lines[0] == "1000 0000000000000000 2 1", outcome
    assert lines[1] == "[0, 1, 2, 3]"  # the code pipe is closed before the program runs (3: listdir's own fd)
    assert lines[2] == "the user's stdin"


async def test_a_warm_run_reports_errors_as_a_cold_run_does(pooled: LocalBackend) -> None:
    await _idle_one(pooled)
    outcome = await pooled.run(_request("x = 1\n1 / 0\n"))
    assert outcome.state is State.FAILED and outcome.exit_code == 1
    assert outcome.stderr.startswith(b'Traceback (most recent call last):\n  File "/box/main.py", line 2')
    assert b"_aevatar_boot" not in outcome.stderr
    exited = await pooled.run(_request("import sys\nsys.exit(7)"))
    assert exited.state is State.FAILED and exited.exit_code == 7


# Programs whose end a program can see: the warm bootstrap leaves with _exit once it has done what
# the interpreter's own exit does (runtime/warm_pool.py); each must end exactly as a cold run does.
ENDINGS = {
    "atexit": "import atexit\natexit.register(lambda: print('bye'))\nprint('hi')\n",
    "thread": "import threading, time\ndef f():\n    time.sleep(0.2)\n    print('thread')\n"
    "threading.Thread(target=f).start()\nprint('main')\n",
    "daemon_thread": "import threading, time\nthreading.Thread(target=lambda: time.sleep(5), daemon=True).start()\n"
    "print('left')\n",
    "del": "class A:\n    def __del__(self):\n        print('del')\na = A()\nprint('x')\n",
    "del_cycle": "class A:\n    def __del__(self):\n        print('cycle del')\na = A()\na.me = a\n",
    "exit_message": "import sys\nprint('out')\nsys.exit('message')\n",
    "exit_3": "import sys\nsys.exit(3)\n",
    "exit_none": "exit()\n",
    "exit_negative": "import sys\nsys.exit(-1)\n",
    "exit_huge": "import sys\nsys.exit(2**70)\n",
    "fdopen_unclosed": "import os\nf = os.fdopen(1, 'w')\nf.write('via fdopen\\n')\n",
    "stdout_replaced": "import sys, io\nprint('before')\nsys.stdout = io.StringIO()\nprint('hidden')\n",
    "stdout_closed": "import sys\nprint('a')\nsys.stdout.close()\n",
    "atexit_raises": "import atexit\ndef boom():\n    raise ValueError('in atexit')\n"
    "atexit.register(boom)\nprint('ok')\n",
    "exception": "x = 1\n1/0\n",
    "keyboard_interrupt": "raise KeyboardInterrupt\n",
    "os_exit": "import os\nprint('buffered, lost')\nos._exit(4)\n",
    "stderr_unterminated": "import sys\nsys.stderr.write('no newline')\n",
    "big_output": "print('y' * 60000)\n",  # most of the output limit (64 KiB here)
    # Exact status (issue 21): exit codes that read like 128 + n, and real signals.
    "exit_137": "import sys\nsys.exit(137)\n",
    "exit_153": "import sys\nsys.exit(153)\n",
    "exit_255": "import sys\nsys.exit(255)\n",
    "sigsegv": "import os\nos.kill(os.getpid(), 11)\n",
    "sigkill": "import os\nos.kill(os.getpid(), 9)\n",
}


def _ending(outcome: object) -> tuple[object, ...]:
    o = outcome
    fields = (o.state, o.exit_code, o.signal, o.stdout, o.stderr)  # type: ignore[attr-defined]
    return tuple(re.sub(rb"0x[0-9a-f]+", b"0x?", f) if isinstance(f, bytes) else f for f in fields)


@pytest.mark.parametrize("name", sorted(ENDINGS))
async def test_a_warm_run_ends_as_a_cold_one(pooled: LocalBackend, name: str) -> None:
    await _idle_one(pooled)
    hits = warm_pool_count("python", hit=True)
    warm = await pooled.run(_request(ENDINGS[name]))
    assert warm_pool_count("python", hit=True) == hits + 1
    other = Limits(**{**{f: getattr(SMALL, f) for f in Limits.__dataclass_fields__}, "memory_mib": 96})
    cold = await pooled.run(_request(ENDINGS[name], limits=other))
    assert _ending(warm) == _ending(cold)
    if name.startswith("exit_") and name[5:].isdigit():
        assert (warm.state, warm.exit_code, warm.signal) == (State.FAILED, int(name[5:]), None)
    if name.startswith("sig"):
        assert (warm.state, warm.limit, warm.exit_code) == (State.FAILED, None, None) and warm.signal in (9, 11)


async def test_node_runs_warm(pooled: LocalBackend) -> None:
    await _idle_one(pooled, "javascript")
    hits = warm_pool_count("javascript", hit=True)
    code = "console.log(process.argv.slice(2).join('|'), require.main === module, __filename)"
    outcome = await pooled.run(_request(code, language="javascript", args=("x", "y z")))
    assert outcome.stdout == b"x|y z true /box/main.js\n", outcome
    assert warm_pool_count("javascript", hit=True) == hits + 1


def test_payload_carries_arguments_and_source_byte_exact() -> None:
    assert payload("print(1)\n", ["a b", "", "\u2713"]) == b"x612062 x xe29c93\nprint(1)\n"


@pytest.mark.parametrize(
    ("rate", "start_s", "floor", "ceiling", "min_rate", "want"),
    [
        (0.0, 0.05, 2, 8, 0.0, 2),
        (0.0, 0.05, 0, 8, 0.0, 0),
        (40.0, 0.05, 2, 8, 0.0, 5),  # 40/s x 50 ms x 2 = 4, + 1
        (400.0, 0.05, 2, 8, 0.0, 8),  # capped
        (0.1, 0.05, 0, 8, 0.3, 0),  # a one-off request with odd limits warms nothing
        (0.5, 0.05, 0, 8, 0.3, 2),
    ],
)
def test_target_size(rate: float, start_s: float, floor: int, ceiling: int, min_rate: float, want: int) -> None:
    assert target_size(rate, start_s, floor, ceiling, min_rate) == want
