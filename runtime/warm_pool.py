"""The warm pool: pre-started, single-use sandboxes that wait for their program.

A warm sandbox is a cold run started early. The local backend builds it exactly as it
builds a cold run (same bubblewrap argv, same seccomp filter, same unprivileged uid
drop, its own cgroup and size-capped workspace), with the limits of its pool key
applied before anything starts. The only difference is the program: instead of the
user's source, the sandbox starts the language's interpreter on a tiny bootstrap that
blocks reading an inherited pipe. The supervisor holds the write end: it writes the
arguments and the source there when a request takes the sandbox, then closes it. The
bootstrap writes the source to the sandbox's own working directory (so tracebacks and
`__file__` behave as in a cold run) and runs it as the main program. stdin, stdout and
stderr are the run's own pipes, untouched until then.

Rules the pool keeps:
- **Keyed by limits.** A sandbox only serves requests whose language and limits match
  the ones its cgroup, rlimits and tmpfs were built with. A request with other limits,
  extra files, network, or a language without a bootstrap is a miss: a cold start.
- **Single use.** `take` removes the sandbox from the pool; after its run the backend
  tears it down (cgroup killed and removed, tmpfs detached). Nothing is ever returned.
- **Adaptive size.** Per key, the target is the recent demand rate times the measured
  start-up time (twice, for slack), within `[min, max_size]`; the key warmed at rest
  (`config.limits`) keeps `size` sandboxes, other keys drain to zero when unused.

This module holds the policy (keys, sizing, bootstraps) and the bookkeeping; the
backend supplies how to start and destroy a sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import structlog

from runtime.metrics import (
    WARM_POOL_HITS,
    WARM_POOL_IDLE,
    WARM_POOL_MISSES,
    WARM_POOL_START_SECONDS,
    WARM_POOL_STARTS,
    WARM_POOL_TARGET,
)
from runtime.types import Limits

log = structlog.get_logger()

CODE_FD_PLACEHOLDER = "{code_fd}"

# Python: only builtin modules (posix, sys, builtins, atexit, gc), so nothing is imported that a cold
# run would not import. The frame of the bootstrap is cut from tracebacks; the source lands at
# /box/main.py as in a cold run.
#
# While it waits, the bootstrap does what every program's start would otherwise pay for: it creates
# /box/main.py (empty, read-only, filled once the source comes), compiles a `pass` (the first
# compile maps and touches a fresh allocator arena: ~0.8 ms of page faults here) and collects the
# start-up garbage once. Nothing of it is visible to the program. A warm run alone: 5.9 -> 4.6 ms
# p50 (bench/README.md).
#
# When the program is over, the bootstrap does what the interpreter's own exit does that a program
# can see, in the same order — join non-daemon threads, run atexit callbacks, flush sys.stdout and
# sys.stderr, clear __main__'s names as module teardown does (so its objects' __del__ run), collect
# garbage, flush again (the original streams too) — and then leaves with `_exit` instead of tearing
# the interpreter down, which took ~2 ms of every warm run here (bench/README.md). The exit status
# is the interpreter's: SystemExit's code (a non-int one printed to stderr, status 1), 1 after an
# uncaught exception, and after KeyboardInterrupt it kills itself with SIGINT as CPython does
# (status 130 only if that fails), so the run reports signal 2 exactly as a cold one. If a flush
# fails, it leaves the ordinary way instead, so the interpreter reports that as it always does
# (status 120). Not reproduced: the __del__ of objects that only other modules (not __main__) still hold.
PYTHON_BOOT = """\
def _aevatar_boot(fd):
    import atexit, builtins, gc, posix, sys
    out = posix.open("/box/main.py", posix.O_WRONLY | posix.O_CREAT | posix.O_EXCL | posix.O_CLOEXEC, 0o444)
    compile("pass", "<boot>", "exec")
    gc.collect()
    chunks = []
    while True:
        b = posix.read(fd, 1048576)
        if not b:
            break
        chunks.append(b)
    posix.close(fd)
    head, _, code = b"".join(chunks).partition(b"\\n")
    args = [bytes.fromhex(a[1:].decode()).decode("utf-8", "surrogateescape") for a in head.split()]
    view = memoryview(code)
    while view:
        view = view[posix.write(out, view):]
    posix.close(out)
    sys.argv = ["main.py", *args]
    g = sys.modules["__main__"].__dict__
    g.clear()
    g.update(__name__="__main__", __doc__=None, __package__=None, __loader__=None, __spec__=None,
             __file__="/box/main.py", __cached__=None, __builtins__=builtins)
    status = 0
    interrupted = False
    try:
        exec(compile(code, "/box/main.py", "exec"), g)
    except SystemExit as e:
        status = e.code
        if status is None:
            status = 0
        elif isinstance(status, int):
            status = status & 0xFF if -(1 << 63) <= status < (1 << 63) else 255
        else:
            if sys.stderr is not None:
                sys.stderr.write(str(status))
                sys.stderr.write("\\n")
            status = 1
    except BaseException as e:
        tb = e.__traceback__
        e = e.with_traceback(tb.tb_next if tb is not None else None)
        sys.excepthook(type(e), e, e.__traceback__)
        status = 130 if isinstance(e, KeyboardInterrupt) else 1
        interrupted = isinstance(e, KeyboardInterrupt)
    threading = sys.modules.get("threading")
    if threading is not None:
        threading._shutdown()
    atexit._run_exitfuncs()
    def flushed(streams):
        for f in streams:
            if f is not None and not getattr(f, "closed", False):
                try:
                    f.flush()
                except BaseException:
                    return False
        return True
    if not flushed((sys.stdout, sys.stderr)):
        sys.exit(status)
    for k in [k for k in g if k[:1] == "_" and k[:2] != "__"]:
        g[k] = None
    for k in [k for k in g if k != "__builtins__"]:
        g[k] = None
    gc.collect()
    if not flushed((sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)):
        sys.exit(status)
    if interrupted:
        import signal
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        posix.kill(posix.getpid(), signal.SIGINT)
    posix._exit(status)
_aevatar_boot({code_fd})
"""

# Node: the bootstrap reads the program, writes /box/main.js, and hands it to Node's own main-module runner.
NODE_BOOT = """\
const fs = require('fs'), Module = require('module');
const fd = {code_fd}, parts = [], buf = Buffer.alloc(1 << 16);
for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0;) parts.push(Buffer.from(buf.subarray(0, n)));
fs.closeSync(fd);
const data = Buffer.concat(parts), nl = data.indexOf(10);
const head = data.subarray(0, nl).toString('latin1'), code = data.subarray(nl + 1);
const args = head.split(' ').filter(Boolean).map((a) => Buffer.from(a.slice(1), 'hex').toString('utf8'));
fs.writeFileSync('/box/main.js', code, { mode: 0o444, flag: 'wx' });
process.argv = [process.argv[0], '/box/main.js', ...args];
Module.runMain('/box/main.js');
"""


@dataclass(frozen=True, slots=True)
class Boot:
    """How one language's interpreter starts early: its argv, with `{code_fd}` where the pipe's number goes."""

    argv: tuple[str, ...]

    def program(self, code_fd: int) -> list[str]:
        return [a.replace(CODE_FD_PLACEHOLDER, str(code_fd)) for a in self.argv]


BOOTS: dict[str, Boot] = {
    # The same interpreter and flags as the cold run (`python3.11 -I -S main.py`), on the bootstrap.
    "python": Boot(("/usr/bin/python3.11", "-I", "-S", "-c", PYTHON_BOOT)),
    "javascript": Boot(("/usr/bin/node", "-e", NODE_BOOT)),
}


def payload(code: str, args: Sequence[str]) -> bytes:
    """What the supervisor writes to the pipe: one line of hex-encoded arguments, then the source bytes."""
    head = " ".join("x" + a.encode("utf-8", "surrogateescape").hex() for a in args)
    return head.encode() + b"\n" + code.encode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True)
class PoolKey:
    language: str
    limits: Limits


@dataclass(frozen=True, slots=True)
class WarmPoolConfig:
    size: int = 0  # idle sandboxes per language at rest, for `limits`; 0 turns the pool off
    max_size: int = 8  # upper bound per key under load
    languages: tuple[str, ...] = ("python", "javascript")
    limits: Limits = Limits()  # the key kept warm at rest: the policy defaults
    window_s: float = 10.0  # demand is measured over this window
    max_idle_s: float = 300.0  # an idle sandbox older than this is replaced by a fresh one
    start_concurrency: int = 2  # sandboxes starting at once, in the background
    max_total: int = 16  # idle or starting sandboxes over every key; each holds its own host uid
    min_requests: int = 3  # a key other than `limits` is warmed only after this many requests in the window

    @property
    def enabled(self) -> bool:
        return self.size > 0

    @classmethod
    def from_sizes(cls, size: int, max_size: int, languages: str, limits: Limits | None = None) -> WarmPoolConfig:
        """From the settings' `warm_pool_size`, `warm_pool_max_size` and `warm_pool_languages` (comma separated)."""
        langs = tuple(x.strip() for x in languages.split(",") if x.strip())
        size = max(0, size)
        max_size = max(size, max_size)
        total = min(64, max(1, max_size) * max(1, len(langs)))
        return cls(size=size, max_size=max_size, languages=langs, limits=limits or Limits(), max_total=total)


def target_size(rate_per_s: float, start_s: float, floor: int, ceiling: int, min_rate_per_s: float = 0.0) -> int:
    """Pure: how many idle sandboxes keep up with `rate_per_s` when one takes `start_s` to start.

    Below `min_rate_per_s` the demand is noise (a one-off request with unusual limits): keep `floor`.
    """
    if rate_per_s <= 0 or rate_per_s < min_rate_per_s:
        return max(0, min(floor, ceiling))
    wanted = math.ceil(rate_per_s * max(start_s, 0.005) * 2) + 1
    return max(floor, min(ceiling, wanted))


class Demand:
    """Recent takes (hits and misses) of one key, as a rate over a sliding window."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._at: deque[float] = deque()

    def record(self, now: float) -> None:
        self._at.append(now)
        self._trim(now)

    def rate(self, now: float) -> float:
        self._trim(now)
        return len(self._at) / self.window_s

    def last(self) -> float | None:
        return self._at[-1] if self._at else None

    def _trim(self, now: float) -> None:
        while self._at and now - self._at[0] > self.window_s:
            self._at.popleft()


class Sandbox(Protocol):
    """What the pool needs to know of a pre-started sandbox."""

    @property
    def uid(self) -> int: ...

    @property
    def created_at(self) -> float: ...

    def alive(self) -> bool: ...


S = TypeVar("S", bound=Sandbox)


@dataclass(slots=True)
class _Key(Generic[S]):
    key: PoolKey
    demand: Demand
    idle: deque[S] = field(default_factory=deque)
    starting: int = 0
    target: int = 0


class WarmPool(Generic[S]):
    """Idle sandboxes per key, refilled in the background; `take` hands one out exactly once."""

    def __init__(
        self,
        config: WarmPoolConfig,
        uids: Sequence[int],
        start: Callable[[PoolKey, int], Awaitable[S]],
        destroy: Callable[[S], Awaitable[None]],
    ) -> None:
        self.config = config
        self._free_uids: deque[int] = deque(uids)
        self._start = start
        self._destroy = destroy
        self._keys: dict[PoolKey, _Key[S]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._jobs: set[asyncio.Task[None]] = set()
        self._start_s = 0.05  # an estimate until the first start is measured
        self._closed = False
        self.started_total = 0
        self.failed_total = 0
        for lang in config.languages:
            if lang in BOOTS:
                self._key(PoolKey(lang, config.limits))

    # -- requests -------------------------------------------------------------------------------
    def key_for(self, language: str, limits: Limits, *, plain: bool) -> PoolKey | None:
        """The key a request would be served from, or None when the pool cannot serve it at all.

        `plain`: the request has no extra files and no network, so a bootstrapped sandbox fits it.
        """
        if self._closed or not plain or language not in BOOTS or language not in self.config.languages:
            return None
        return PoolKey(language, limits)

    def take(self, key: PoolKey) -> S | None:
        """An idle sandbox for `key`, removed from the pool for good; None is a miss."""
        entry = self._key(key)
        entry.demand.record(time.monotonic())
        found: S | None = None
        while entry.idle:
            candidate = entry.idle.popleft()
            if candidate.alive():
                found = candidate
                break
            self._spawn_job(self._discard(candidate))  # died while idle: never hand it out
        (WARM_POOL_HITS if found is not None else WARM_POOL_MISSES).labels(language=key.language).inc()
        self._publish(entry)
        self._wake.set()
        return found

    def release_uid(self, uid: int) -> None:
        """A taken sandbox has been torn down: its host uid may serve a new one."""
        self._free_uids.append(uid)
        self._wake.set()

    # -- introspection (tests, bench, metrics) --------------------------------------------------
    def idle(self, key: PoolKey) -> list[S]:
        entry = self._keys.get(key)
        return list(entry.idle) if entry is not None else []

    def target(self, key: PoolKey) -> int:
        entry = self._keys.get(key)
        return entry.target if entry is not None else 0

    def default_key(self, language: str) -> PoolKey:
        return PoolKey(language, self.config.limits)

    async def wait_filled(self, key: PoolKey, count: int | None = None, timeout_s: float = 30.0) -> bool:
        """Wait until `key` holds `count` idle sandboxes (default: its target); False at the timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            entry = self._keys.get(key)
            want = count if count is not None else (entry.target if entry is not None else 0)
            if entry is not None and len(entry.idle) >= want:
                return True
            await asyncio.sleep(0.01)
        return False

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._maintain(), name="warm-pool")

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while self._jobs:
            await asyncio.gather(*list(self._jobs), return_exceptions=True)
        for entry in self._keys.values():
            while entry.idle:
                await self._discard(entry.idle.popleft())
            self._publish(entry)

    # -- internals ------------------------------------------------------------------------------
    def _key(self, key: PoolKey) -> _Key[S]:
        entry = self._keys.get(key)
        if entry is None:
            entry = self._keys[key] = _Key(key, Demand(self.config.window_s))
        return entry

    def _floor(self, key: PoolKey) -> int:
        return self.config.size if key.limits == self.config.limits and key.language in self.config.languages else 0

    def _starting(self) -> int:
        return sum(e.starting for e in self._keys.values())

    def _held(self) -> int:
        return sum(len(e.idle) + e.starting for e in self._keys.values())

    async def _maintain(self) -> None:
        while not self._closed:
            self._wake.clear()
            try:
                await self._tick()
            except Exception:
                log.exception("warm_pool_tick_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)

    async def _tick(self) -> None:
        now = time.monotonic()
        for key, entry in list(self._keys.items()):
            floor = self._floor(key)
            min_rate = 0.0 if floor > 0 else self.config.min_requests / self.config.window_s
            entry.target = target_size(entry.demand.rate(now), self._start_s, floor, self.config.max_size, min_rate)
            stale = [s for s in entry.idle if not s.alive() or now - s.created_at > self.config.max_idle_s]
            for sb in stale:
                entry.idle.remove(sb)
                self._spawn_job(self._discard(sb))
            while len(entry.idle) + entry.starting > entry.target and entry.idle:
                self._spawn_job(self._discard(entry.idle.pop()))  # the newest goes: the oldest age out anyway
            self._publish(entry)
            if entry.target == 0 and not entry.idle and not entry.starting and self._floor(key) == 0:
                del self._keys[key]
        # Fill the neediest keys first, within the start concurrency and the uid budget.
        while self._starting() < self.config.start_concurrency and self._free_uids:
            if self._held() >= self.config.max_total:
                break
            needy = [e for e in self._keys.values() if len(e.idle) + e.starting < e.target]
            if not needy:
                break
            entry = min(needy, key=lambda e: (len(e.idle) + e.starting) / max(e.target, 1))
            uid = self._free_uids.popleft()
            entry.starting += 1
            self._spawn_job(self._fill(entry, uid))

    async def _fill(self, entry: _Key[S], uid: int) -> None:
        began = time.monotonic()
        try:
            sandbox = await self._start(entry.key, uid)
        except Exception as exc:
            self.failed_total += 1
            self._free_uids.append(uid)
            log.warning("warm_pool_start_failed", language=entry.key.language, error=str(exc))
            await asyncio.sleep(1.0)  # a broken toolchain must not turn the pool into a busy loop
            return
        finally:
            entry.starting -= 1
            self._wake.set()
        elapsed = time.monotonic() - began
        self._start_s = 0.8 * self._start_s + 0.2 * elapsed
        self.started_total += 1
        WARM_POOL_STARTS.labels(language=entry.key.language).inc()
        WARM_POOL_START_SECONDS.labels(language=entry.key.language).observe(elapsed)
        if self._closed or entry.key not in self._keys:
            await self._discard(sandbox)
            return
        entry.idle.append(sandbox)
        self._publish(entry)

    async def _discard(self, sandbox: S) -> None:
        try:
            await self._destroy(sandbox)
        except Exception as exc:
            log.warning("warm_pool_destroy_failed", error=str(exc))
        finally:
            self._free_uids.append(sandbox.uid)

    def _spawn_job(self, job: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(job)
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)

    def _publish(self, entry: _Key[S]) -> None:
        # Gauges are per language: the sum over that language's keys.
        lang = entry.key.language
        same = [e for e in self._keys.values() if e.key.language == lang]
        if entry not in same:
            same.append(entry)
        WARM_POOL_IDLE.labels(language=lang).set(sum(len(e.idle) for e in same))
        WARM_POOL_TARGET.labels(language=lang).set(sum(e.target for e in same))
