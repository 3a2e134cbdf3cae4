"""Shared fixtures for the runtime suite: one real LocalBackend (real bwrap, real cgroups)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import pytest

from runtime.cgroups import discover_host
from runtime.local import LocalBackend, LocalBackendConfig
from runtime.types import Limits, Outcome, OutputChunk, RunRequest

SESSION_TAG = f"{os.getpid()}"
STATE_DIR = f"/tmp/aevatar-sandbox-tests-{SESSION_TAG}"
CGROUP_PREFIX = f"aevatar-sandbox-test-{SESSION_TAG}"
UID_BASE = 61000
MAX_SLOTS = 24
# Small limits keep the hostile suite fast on 2 cores.
SMALL = Limits(wall_time_ms=2000, cpu_time_ms=1000, memory_mib=64, processes=32, output_bytes=65_536, disk_mib=8)

_counter = 0


def next_id(prefix: str = "t") -> str:
    global _counter
    _counter += 1
    return f"{prefix}-{SESSION_TAG}-{_counter}"


def make_config(**overrides: object) -> LocalBackendConfig:
    base: dict[str, object] = {
        "state_dir": STATE_DIR,
        "cgroup_prefix": CGROUP_PREFIX,
        "uid_base": UID_BASE,
        "max_slots": MAX_SLOTS,
    }
    base.update(overrides)
    return LocalBackendConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def config() -> LocalBackendConfig:
    return make_config()


@pytest.fixture(scope="session", autouse=True)
def nothing_left_at_the_end() -> Iterator[None]:
    """At the session's end (torn down last: set up first), nothing of any run of this session remains.

    Whatever tests ran and in whatever order: no sandbox process of this session (one of the runtime
    suite's uids that descends from this process, the subreaper its orphans come back to), no
    directory of the session's cgroup prefix in any hierarchy, no mount of its state dir.
    """
    yield
    deadline = time.monotonic() + 5
    while own_sandbox_processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert own_sandbox_processes() == [], "a sandbox process survived the session"
    assert prefix_dirs(CGROUP_PREFIX) == [], "the session's cgroups remain"
    with open("/proc/self/mountinfo") as f:
        assert [line for line in f if STATE_DIR in line] == [], "a mount of the session's state dir remains"
    for sub in ("runs", "art"):  # a backend of a test's own may share the state dir: nothing of a run in it
        path = os.path.join(STATE_DIR, sub)
        assert not os.path.isdir(path) or os.listdir(path) == [], f"{path} still holds a run's files"


@pytest.fixture(scope="session")
async def backend(config: LocalBackendConfig) -> AsyncIterator[LocalBackend]:
    b = LocalBackend(config)
    await b.check()
    yield b
    try:
        await assert_no_run_remains(b)  # while it is still up: each run cleans up after itself
    finally:
        await b.close()
    remove_state_dir(STATE_DIR)  # the session's own; fails if anything of a run is left in it


async def assert_no_run_remains(b: LocalBackend) -> None:
    """After the session's last run, with the backend still up: no run's process, cgroup, mount or directory."""
    outcome = await b.run(RunRequest(next_id("last"), "python", "print(1)"))
    assert outcome.stdout == b"1\n", outcome
    deadline = time.monotonic() + 2
    while own_sandbox_processes() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert own_sandbox_processes() == [], "a sandbox process survived its run"
    runs = [d for d in prefix_dirs(CGROUP_PREFIX) for sub in os.listdir(d) if os.path.isdir(os.path.join(d, sub))]
    assert runs == [], "run cgroups remain"
    with open("/proc/self/mountinfo") as f:
        assert [line for line in f if STATE_DIR in line] == [], "a run's tmpfs is still mounted"
    assert os.listdir(os.path.join(STATE_DIR, "runs")) == [], "a run's directory remains"
    art = os.path.join(STATE_DIR, "art")
    assert not os.path.isdir(art) or os.listdir(art) == [], "a compiled run's artifacts remain"


def prefix_dirs(prefix: str) -> list[str]:
    """The directories named `prefix` in every cgroup hierarchy this process sees."""
    layout = discover_host()
    bases = [b for b in [layout.v2_dir, *layout.v1_dirs.values()] if b is not None]
    return sorted({os.path.join(b, prefix) for b in bases if os.path.isdir(os.path.join(b, prefix))})


def remove_state_dir(state_dir: str) -> None:
    """Remove a closed backend's state dir, which must hold nothing of any run any more (rmdir fails
    otherwise): runs/, and art/ once a compiled run has been (runtime/workspace.py)."""
    for sub in ("runs", "art"):
        if os.path.isdir(os.path.join(state_dir, sub)):
            os.rmdir(os.path.join(state_dir, sub))
    os.rmdir(state_dir)


@dataclass
class Runner:
    backend: LocalBackend
    chunks: list[OutputChunk] = field(default_factory=list)

    async def __call__(
        self,
        code: str,
        *,
        stdin: bytes = b"",
        args: tuple[str, ...] = (),
        files: dict[str, str] | None = None,
        language: str = "python",
        network: bool = False,
        execution_id: str | None = None,
        **limits: int,
    ) -> Outcome:
        lim = Limits(**{**_limits_dict(SMALL), **limits})
        request = RunRequest(
            execution_id=execution_id or next_id(),
            language=language,
            code=code,
            files=files or {},
            stdin=stdin,
            args=args,
            limits=lim,
            network=network,
        )

        async def on_output(chunk: OutputChunk) -> None:
            self.chunks.append(chunk)

        return await self.backend.run(request, on_output)


def _limits_dict(limits: Limits) -> dict[str, int]:
    return {name: getattr(limits, name) for name in Limits.__dataclass_fields__}


@pytest.fixture
def run(backend: LocalBackend) -> Runner:
    return Runner(backend)


@dataclass
class Heartbeat:
    interval_s: float = 0.01
    ticks: list[float] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def beat(self) -> None:
        while not self._stop.is_set():
            self.ticks.append(time.monotonic())
            await asyncio.sleep(self.interval_s)

    def stop(self) -> None:
        self._stop.set()

    @property
    def max_gap_s(self) -> float:
        return max((b - a for a, b in zip(self.ticks, self.ticks[1:], strict=False)), default=0.0)


@pytest.fixture
def heartbeat() -> Iterator[Heartbeat]:
    yield Heartbeat()


def own_sandbox_processes() -> list[int]:
    """Processes of the runtime suite's sandbox uids (61000-61099, 62500-62799) that
    descend from this process: this session's, not a concurrent session's on the same uids."""
    me = os.getpid()
    found = []
    for pid in [*sandbox_uid_processes(UID_BASE, 100), *sandbox_uid_processes(62500, 300)]:
        ancestor = pid
        while ancestor > 1:
            try:
                with open(f"/proc/{ancestor}/stat") as f:
                    ancestor = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                break
            if ancestor == me:
                found.append(pid)
                break
    return sorted(found)


def sandbox_uid_processes(uid_base: int = UID_BASE, slots: int = MAX_SLOTS) -> list[int]:
    """Host pids whose real uid is one of the sandbox slot uids."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as f:
                for line in f:
                    if line.startswith("Uid:"):
                        uid = int(line.split()[1])
                        if uid_base <= uid < uid_base + slots:
                            found.append(int(name))
                        break
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return found
