"""The local backend: bubblewrap + cgroups + rlimits + seccomp, supervised from asyncio.

The supervisor runs as root. For each phase it creates the run's cgroups, then
spawns bubblewrap through a child that joins those cgroups, sets rlimits and drops
to the slot's unprivileged host uid before exec (see notes/sandbox-facts.md: bwrap
started as root maps the sandbox to host root). Output is read from pipes only.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import functools
import json
import math
import os
import resource
import signal
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

import structlog

from core.filenames import Reserved
from runtime import sandbox_exec
from runtime.bwrap import SandboxSpec, build_argv
from runtime.capture import Capture, Stream
from runtime.cgroups import CgroupLayout, CgroupMode, Remount, RunCgroup, discover_host, favor_dynmods, restore_mounts
from runtime.compile_cache import Artifact, ArtifactError, CacheLimits, CompileCache, cache_key, check_artifacts
from runtime.doctor import DEFAULT_REQUIRED, DoctorReport, probe
from runtime.errors import (
    BackendClosed,
    InvalidRequest,
    IsolationUnavailable,
    RuntimeSandboxError,
    SandboxSetupError,
    UnknownLanguage,
)
from runtime.languages import LANGUAGES, Language
from runtime.metrics import COMPILE_CACHE_EVICTIONS, record_compile_cache
from runtime.outcome import Evidence, KillReason, Verdict, classify
from runtime.reaper import exited, reap, set_subreaper
from runtime.seccomp_policy import bpf_fd, compile_bpf
from runtime.sweep import sweep
from runtime.types import LanguageInfo, Limits, OnOutput, Outcome, OutputChunk, RunRequest
from runtime.warm_pool import BOOTS, PoolKey, WarmPool, WarmPoolConfig, payload
from runtime.workspace import Workspace, check_file_names, mount_runs, unmount_runs
from streams.states import State

log = structlog.get_logger()
T = TypeVar("T")

ROOT_SYMLINKS = ("/bin", "/sbin", "/lib", "/lib64")
PROBE_LIMITS = Limits(wall_time_ms=5000, cpu_time_ms=5000, memory_mib=128, processes=16, output_bytes=4096, disk_mib=1)
PROBE_RETRY_S = 30.0  # a failed version probe is run again after this long
BWRAP_OWN_PROCESSES = 2  # bubblewrap's monitor and its pid-1 init live in the run's pids cgroup


@dataclass(frozen=True, slots=True)
class LocalBackendConfig:
    state_dir: str = "/var/lib/aevatar-sandbox"  # outside any checkout; runs/<random id>/ per run
    # > 0: runs/ becomes a tmpfs of at most this size while the backend is up (runtime/workspace.py,
    # mount_runs): a run's directories are made and removed in microseconds instead of ~150 µs on ext4.
    runs_tmpfs_mib: int = 0
    uid_base: int = 61000  # slot i runs as host uid uid_base + i (never shared by concurrent runs)
    max_slots: int = 32
    cgroup_prefix: str = "aevatar-sandbox"
    cgroup_mode: CgroupMode = "auto"  # "v1" ignores the unified hierarchy (for tests and old hosts)
    # Opt-in, a host-wide change: remount every cgroup2 hierarchy with favordynmods at start
    # (runtime/cgroups.py: favor_dynmods) so that moving a sandbox into its cgroups does not wait for
    # an RCU grace period holding the cgroup mutex; close() gives each its original options back.
    # AEVATAR_SANDBOX_CGROUP_FAVOR_DYNMODS=1 for the executor; `python -m bench.favordynmods` measures it.
    cgroup_favor_dynmods: bool = False
    # close() waits this long for the runs it killed to be reaped, then forces the clean-up.
    close_timeout_s: float = 10.0
    bwrap_path: str = "/usr/bin/bwrap"
    # Where the sandbox-exec helper is built (runtime/sandbox_exec.py); None: set up in a preexec_fn
    # (a fork of the whole supervisor per sandbox instead of a vfork).
    sandbox_exec_dir: str | None = sandbox_exec.DEFAULT_DIR
    # Run the program under the sandbox's own init (the same helper binary, `--init`, as pid 1),
    # which reports its exact wait status out of band: exit(137) is never taken for a SIGKILL, and a
    # set-up failure is never taken from what the program printed. Built in `sandbox_exec_dir` (or
    # the default directory). False, or no C compiler: bubblewrap's own init, whose status is
    # read as a signal only when a kill is known to have happened.
    sandbox_init: bool = True
    require_features: frozenset[str] = DEFAULT_REQUIRED
    cpu_cores: float = 1.0  # CPU bandwidth per run (cgroup quota)
    nofile: int = 256
    inodes_per_mib: int = 256  # tmpfs inode cap per MiB of disk limit
    poll_interval_ms: int = 20
    read_chunk_bytes: int = 65_536
    allow_network: bool = False  # True shares the host network with runs that ask for it
    hostname: str = "sandbox"
    sandbox_uid: int = 1000  # the uid the program sees inside its user namespace
    probe_limits: Limits = PROBE_LIMITS
    languages: Mapping[str, Language] | None = None  # None: the built-in registry
    max_arg_bytes: int = 131_072  # the kernel's MAX_ARG_STRLEN
    max_args_total_bytes: int = 1_048_576
    # Outside state_dir (whose runs/ come and go) and outside any sandbox; shared by supervisors.
    compile_cache_dir: str = "/var/cache/aevatar-sandbox/compile"
    compile_cache_limits: CacheLimits = CacheLimits()
    # Pre-started single-use sandboxes (off unless warm_pool.size > 0). Pool sandboxes run as host
    # uids uid_base + max_slots + j, j < warm_pool.max_total: never shared with a cold slot.
    warm_pool: WarmPoolConfig = WarmPoolConfig()


@dataclass(frozen=True, slots=True)
class PhaseResult:
    verdict: Verdict
    stdout: bytes
    stderr: bytes
    truncated_stdout: bool
    truncated_stderr: bool
    cpu_time_ms: int
    memory_peak_kib: int
    wall_ms: int


@dataclass(frozen=True, slots=True)
class _Probe:
    info: LanguageInfo
    output: bytes  # the probe's raw output: the toolchain's identity in compile cache keys
    retry_after: float  # monotonic time after which a failed probe is run again


@dataclass(slots=True)
class _Handle:
    cancelled: bool = False
    cgroup: RunCgroup | None = None
    kill_reason: KillReason | None = None
    monitor_pid: int | None = None  # bubblewrap's outer process: our child, spared so it reaps the rest

    def kill(self, reason: KillReason) -> None:
        if self.kill_reason is None:
            self.kill_reason = reason
        if self.cgroup is not None:
            self.cgroup.kill(spare=self.monitor_pid)


@dataclass(frozen=True, slots=True)
class _Spawned:
    proc: asyncio.subprocess.Process
    status_r: int  # read end of bubblewrap's --json-status-fd
    started: float  # monotonic time of the spawn
    init_r: int = -1  # read end of the sandbox init's status pipe (-1: no init)


@dataclass(slots=True)
class _Warm:
    """A pre-started sandbox: built like a cold run of `key`, its interpreter blocked reading `code_w`'s pipe."""

    key: PoolKey
    uid: int
    ws: Workspace
    cg: RunCgroup
    spawned: _Spawned
    code_w: int
    created_at: float
    uses: int = 0
    destroyed: bool = False
    init_pid: int | None = None  # its sandbox's init, once the run is over: reaped by the teardown

    def leave_init(self, pid: int) -> None:
        self.init_pid = pid

    def alive(self) -> bool:
        return self.spawned.proc.returncode is None and not self.destroyed


@dataclass(slots=True)
class _Slots:
    free: asyncio.Queue[int] = field(default_factory=asyncio.Queue)


PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)


def _child_setup(procs_files: Sequence[str], uid: int, rlimits: Sequence[tuple[int, int, int]]) -> None:
    """Runs in the forked child, before exec'ing bwrap: join cgroups, set rlimits, drop privileges."""
    for path in procs_files:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)
    for which, soft, hard in rlimits:
        resource.setrlimit(which, (soft, hard))
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid or os.getegid() != uid:
        raise OSError("privilege drop failed")
    # Set after the uid change, which clears it: bubblewrap dies with the supervisor, even on kill -9.
    if _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError("prctl(PR_SET_PDEATHSIG) failed")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


async def _off_loop(fn: Callable[..., T], *args: object) -> T:
    """Run blocking file-system work (tmpfs mounts, cgroup directories) in a thread, off the event loop.

    Mounting, unmounting and removing a sandbox's workspace take ~1-2 ms of system calls each: in
    the loop they held up every other run's supervision and the processors' Kafka traffic. A
    cancellation waits for the thread to finish before it propagates, so cleanup never races it.
    """
    work = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await work
        raise


def _outcome(res: PhaseResult, compile_output: bytes, compile_ms: int) -> Outcome:
    v = res.verdict
    return Outcome(
        v.state, v.limit, v.exit_code, v.signal, res.stdout, res.stderr, compile_output, res.truncated_stdout,
        res.truncated_stderr, res.cpu_time_ms, res.memory_peak_kib, compile_ms, res.wall_ms, v.error,
    )  # fmt: skip


def _setup_error(
    status: Mapping[str, int],
    init_status: Mapping[str, int] | None,
    kill_reason: KillReason | None,
    oom_kills: int,
    stderr: bytes,
) -> str | None:
    """The platform's failure to start the program, from out-of-band facts only, or None.

    With the sandbox's init, the program ran if and only if the init reported its wait status. No
    report and no kill of ours or the kernel's (which can take the init with the program) means
    bubblewrap (or the init) failed before the program started: what is on stderr is then theirs,
    not the program's. Without the init, only bubblewrap's own status says so (no child at all).
    """
    if kill_reason is not None:
        return None
    if init_status is None:
        if "child-pid" in status:
            return None
    elif "wait-status" in init_status or oom_kills > 0:
        return None
    elif "exec-errno" in init_status:
        return f"sandbox setup failed: cannot exec the language's command: {os.strerror(init_status['exec-errno'])}"
    return "sandbox setup failed: " + (stderr.decode("utf-8", "replace").strip()[-2000:] or "no status")


async def _until(aw: Coroutine[object, object, None], deadline: float) -> bool:
    """Await `aw` until the monotonic `deadline`; False (and `aw` cancelled) if it did not finish by then."""
    try:
        await asyncio.wait_for(aw, timeout=max(0.0, deadline - time.monotonic()))
    except TimeoutError:
        return False
    return True


def _remove_prefix(layout: CgroupLayout, prefix: str) -> None:
    """Remove this backend's own cgroup directory (the prefix) in every hierarchy, once it is empty.

    A v1 memory cgroup is not removable at once after its last child went (its charges are released
    asynchronously): EBUSY is retried for a moment. A prefix another supervisor still uses keeps
    its children and stays.
    """
    dirs = {os.path.dirname(path) for path in RunCgroup(layout, prefix, "_").dirs.values()}
    deadline = time.monotonic() + 2.0
    while dirs:
        for path in sorted(dirs):
            try:
                os.rmdir(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                if _subdirs(path):
                    pass  # another supervisor's runs: the prefix is theirs to remove
                elif exc.errno == errno.EBUSY and time.monotonic() < deadline:
                    continue
                else:
                    log.warning("cgroup_prefix_not_removed", path=path, error=exc.strerror)
            dirs.discard(path)
        if dirs:
            time.sleep(0.01)


def _subdirs(path: str) -> list[str]:
    with contextlib.suppress(OSError):
        return [e.name for e in os.scandir(path) if e.is_dir(follow_symlinks=False)]
    return []


def _error_outcome(message: str) -> Outcome:
    return Outcome(State.ERROR, None, None, None, b"", b"", b"", False, False, 0, 0, 0, 0, message)


class LocalBackend:
    """Runs each request in a fresh bubblewrap sandbox on this host."""

    def __init__(self, config: LocalBackendConfig | None = None) -> None:
        self.config = config or LocalBackendConfig()
        self._languages: Mapping[str, Language] = (
            self.config.languages if self.config.languages is not None else LANGUAGES
        )
        self._running: dict[str, _Handle] = {}
        self._slots: asyncio.Queue[int] | None = None
        self._ready: asyncio.Lock | None = None
        self._report: DoctorReport | None = None
        self._layout: CgroupLayout | None = None
        self._bpf: bytes | None = None
        self._closed = False
        self._runs_mounted = False
        self._tasks: set[asyncio.Task[Outcome]] = set()
        self._teardowns: set[asyncio.Task[None]] = set()
        self._probes: dict[str, _Probe] = {}
        self._probe_locks: dict[str, asyncio.Lock] = {}
        self._cache = CompileCache(self.config.compile_cache_dir, self.config.compile_cache_limits)
        self._pool: WarmPool[_Warm] | None = None
        self._helper: str | None = None
        self._init: str | None = None  # the sandbox-exec binary run as each sandbox's pid 1
        self._remounted: list[Remount] = []  # what favor_dynmods changed: restored at close

    # -- readiness ------------------------------------------------------------------------------
    async def check(self) -> DoctorReport:
        """Probe the host once; raise IsolationUnavailable when a required feature is missing."""
        if self._ready is None:
            self._ready = asyncio.Lock()
        async with self._ready:
            if self._report is None:
                report = await asyncio.to_thread(
                    probe,
                    self.config.bwrap_path,
                    self.config.uid_base,
                    self.config.cgroup_mode,
                    self.config.require_features,
                )
                self._layout = discover_host(self.config.cgroup_mode)
                if self.config.cgroup_favor_dynmods and self._layout.v2_dir is not None and not self._closed:
                    try:
                        self._remounted = favor_dynmods()
                    except OSError as exc:
                        log.warning("cgroup_favordynmods_unavailable", error=str(exc))
                    else:
                        if self._remounted:
                            log.info("cgroup_favordynmods_set", mounts=[r.mount_point for r in self._remounted])
                self._bpf = compile_bpf() if report.feature_ok("seccomp") else None
                self._slots = asyncio.Queue()
                for i in range(self.config.max_slots):
                    self._slots.put_nowait(i)
                os.makedirs(os.path.join(self.config.state_dir, "runs"), mode=0o711, exist_ok=True)
                os.chmod(self.config.state_dir, 0o711)
                if self.config.runs_tmpfs_mib > 0:
                    try:
                        mount_runs(self.config.state_dir, self.config.runs_tmpfs_mib)  # or reuse a predecessor's
                        self._runs_mounted = True  # this backend holds the state dir: it unmounts at close
                    except OSError as exc:
                        log.warning("runs_tmpfs_unavailable", error=str(exc), fallback="runs/ on the state dir's disk")
                os.chmod(os.path.join(self.config.state_dir, "runs"), 0o711)
                self._cache.ensure()
                if self.config.sandbox_exec_dir is not None:
                    self._helper = await asyncio.to_thread(sandbox_exec.ensure, self.config.sandbox_exec_dir)
                if self.config.sandbox_init:
                    self._init = self._helper or await asyncio.to_thread(
                        sandbox_exec.ensure, self.config.sandbox_exec_dir or sandbox_exec.DEFAULT_DIR
                    )
                    if self._init is None:
                        log.warning("sandbox_init_unavailable", fallback="bubblewrap's init: signals inferred")
                set_subreaper()  # bubblewrap's orphaned sandbox init comes back to us to be reaped
                self._report = report
                if self.config.warm_pool.enabled and not report.missing_required() and not self._closed:
                    first = self.config.uid_base + self.config.max_slots
                    uids = range(first, first + self.config.warm_pool.max_total)
                    self._pool = WarmPool(self.config.warm_pool, uids, self._start_warm, self._destroy_warm)
                    self._pool.start()
        missing = self._report.missing_required()
        if missing:
            raise IsolationUnavailable(missing)
        return self._report

    @property
    def pool(self) -> WarmPool[_Warm] | None:
        """The warm pool, once `check` has run with `config.warm_pool.size > 0`."""
        return self._pool

    # -- Backend Protocol -----------------------------------------------------------------------
    async def run(self, request: RunRequest, on_output: OnOutput | None = None) -> Outcome:
        if self._closed:
            return _error_outcome(str(BackendClosed("the local backend is closed")))
        try:
            await self.check()
        except IsolationUnavailable as exc:
            return _error_outcome(str(exc))
        language = self._languages.get(request.language)
        if language is None:
            return _error_outcome(str(UnknownLanguage(request.language)))
        if request.execution_id in self._running:
            return _error_outcome(f"execution {request.execution_id!r} is already running here")
        if request.network and not self.config.allow_network:
            return _error_outcome("network access is not available on this backend")
        handle = _Handle()
        self._running[request.execution_id] = handle
        warm = self._take_warm(request, language)
        if warm is not None:
            try:
                return await self._run_warm(request, warm, handle, on_output)
            except (InvalidRequest, SandboxSetupError) as exc:
                return _error_outcome(str(exc))
            finally:
                self._running.pop(request.execution_id, None)
        assert self._slots is not None
        slot = await self._slots.get()
        try:
            return await self._run_in_slot(request, language, slot, handle, on_output)
        except (InvalidRequest, SandboxSetupError) as exc:
            return _error_outcome(str(exc))
        finally:
            self._slots.put_nowait(slot)
            self._running.pop(request.execution_id, None)

    async def cancel(self, execution_id: str) -> bool:
        handle = self._running.get(execution_id)
        if handle is None:
            return False
        handle.cancelled = True
        handle.kill(KillReason.CANCELLED)
        return True

    async def languages(self) -> list[LanguageInfo]:
        """Every language with its version as probed inside a sandbox, and whether it works here."""
        out = []
        for lang in self._languages.values():
            probed = await self._toolchain(lang, None)
            out.append(probed.info)
        return out

    async def close(self) -> None:
        """Kill every run and wait for them, at most `config.close_timeout_s`; then clean up and return.

        A run that cannot be reaped in time (a kill that does not land, a monitor that never exits)
        does not hold the shutdown: it is logged, every process of this backend's uids is killed
        (bubblewrap's monitors too) and its cgroups and mounts are removed anyway (runtime/sweep.py).
        """
        self._closed = True
        deadline = time.monotonic() + max(0.0, self.config.close_timeout_s)
        pool_closed = self._pool is None or await _until(self._pool.close(), deadline)
        if not pool_closed:
            log.error("close_warm_pool_timed_out", timeout_s=self.config.close_timeout_s)
        for handle in list(self._running.values()):
            handle.kill(KillReason.CANCELLED)
        while self._running and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        stuck = sorted(self._running)
        if stuck:
            log.error("close_runs_not_reaped", executions=stuck, timeout_s=self.config.close_timeout_s)
        settled = await _until(self.settled(), deadline)
        if not settled:
            log.error("close_teardowns_timed_out", timeout_s=self.config.close_timeout_s)
        if stuck or not settled or not pool_closed:
            pool_uids = self.config.warm_pool.max_total if self.config.warm_pool.enabled else 0
            report = await asyncio.to_thread(
                sweep,
                self.config.state_dir,
                self.config.cgroup_prefix,
                self.config.uid_base,
                self.config.max_slots + pool_uids,
            )
            log.warning(
                "close_forced",
                killed=report.processes_killed,
                cgroups=report.cgroups_removed,
                runs=report.runs_removed,
            )
        if self._runs_mounted:
            unmount_runs(self.config.state_dir)
            self._runs_mounted = False
        if self._layout is not None:
            await asyncio.to_thread(_remove_prefix, self._layout, self.config.cgroup_prefix)
        if self._remounted:
            remounted, self._remounted = self._remounted, []
            try:
                restored = restore_mounts(remounted)
            except OSError as exc:
                log.error("cgroup_favordynmods_not_restored", error=str(exc))
            else:
                log.info("cgroup_favordynmods_restored", mounts=restored)

    # -- internals ------------------------------------------------------------------------------
    async def _toolchain(self, lang: Language, slot: int | None) -> _Probe:
        """The language's probe, run once per backend while it succeeds (a failure is retried later).

        `slot`: one the caller holds, or None to take one for the probe.
        """
        lock = self._probe_locks.setdefault(lang.name, asyncio.Lock())
        async with lock:
            cached = self._probes.get(lang.name)
            if cached is not None and (cached.info.available or time.monotonic() < cached.retry_after):
                return cached
            if slot is not None:
                probed = await self._probe_language(lang, slot)
            else:
                try:
                    await self.check()
                except RuntimeSandboxError:
                    return _Probe(LanguageInfo(lang.name, "", lang.compiled, False), b"", 0.0)
                assert self._slots is not None
                slot = await self._slots.get()
                try:
                    probed = await self._probe_language(lang, slot)
                finally:
                    self._slots.put_nowait(slot)
            self._probes[lang.name] = probed
            return probed

    async def _probe_language(self, lang: Language, slot: int) -> _Probe:
        retry_after = time.monotonic() + PROBE_RETRY_S
        limits = lang.probe_limits or self.config.probe_limits
        try:
            ws = Workspace(self.config.state_dir, limits.disk_mib, 256)
            ws.create({})
            try:
                result = await self._phase(list(lang.version_probe), lang, ws, [], limits, b"", slot, _Handle(), None)
            finally:
                ws.destroy()
        except RuntimeSandboxError:
            return _Probe(LanguageInfo(lang.name, "", lang.compiled, False), b"", retry_after)
        output = result.stdout + result.stderr
        version = lang.parse_version(output)
        ok = result.verdict.state is State.SUCCEEDED and version is not None
        return _Probe(LanguageInfo(lang.name, version or "", lang.compiled, ok), output, retry_after)

    async def _run_in_slot(
        self, request: RunRequest, lang: Language, slot: int, handle: _Handle, on_output: OnOutput | None
    ) -> Outcome:
        lang = lang.for_source(request.code)  # Java: the file and the class run are named after the code's
        self._check_args(request.args)
        # The policy validation applied (core/filenames.py): here again, in case a request skipped it.
        check_file_names(request.files, Reserved(lang.source_file, lang.artifacts_dir))
        files: dict[str, bytes] = {k: v.encode() for k, v in request.files.items()}
        files[lang.source_file] = request.code.encode()
        limits = request.limits
        artifacts: list[Artifact] = []
        compile_output, compile_ms = b"", 0
        if lang.compiled:
            built = await self._compiled(lang, files, slot, handle)
            if isinstance(built, Outcome):
                return built
            artifacts, compile_output, compile_ms = built
        ws = Workspace(self.config.state_dir, limits.disk_mib, max(64, limits.disk_mib * self.config.inodes_per_mib))
        binds = ws.create(files, artifacts)
        try:
            res = await self._phase(
                lang.run_argv(request.args, files, limits.memory_mib),
                lang,
                ws,
                binds,
                limits,
                request.stdin,
                slot,
                handle,
                on_output,
                network=request.network,
            )
            return _outcome(res, compile_output, compile_ms)
        finally:
            ws.destroy()

    # -- the warm pool --------------------------------------------------------------------------
    def _take_warm(self, request: RunRequest, lang: Language) -> _Warm | None:
        """A pre-started sandbox built for exactly this request's language and limits, or None (cold start)."""
        if self._pool is None or lang.compiled:
            return None
        plain = not request.files and not request.network
        key = self._pool.key_for(request.language, request.limits, plain=plain)
        if key is None:
            return None
        try:
            self._check_args(request.args)
        except InvalidRequest:
            return None  # the cold path reports it
        return self._pool.take(key)

    async def _run_warm(self, request: RunRequest, sb: _Warm, handle: _Handle, on_output: OnOutput | None) -> Outcome:
        """Hand the program to a pre-started sandbox, supervise it as a cold run, then destroy it.

        Once the run is over (every process of it killed and reaped, its usage read), the outcome is
        returned at once and the sandbox's cgroup and workspace are removed in the background
        (`settled` waits for that); its host uid serves a new sandbox only after that.
        """
        sb.uses += 1
        if sb.uses != 1:  # the pool hands each sandbox out once; never run a second program in one
            raise SandboxSetupError("a warm sandbox was handed out twice")
        try:
            if handle.cancelled:
                res = PhaseResult(Verdict(State.CANCELLED, None, None, None), b"", b"", False, False, 0, 0, 0)
                await self._destroy_warm(sb)
                await self._tear_down_taken(sb)
                return _outcome(res, b"", 0)
            handle.cgroup = sb.cg
            handle.kill_reason = None
            started = time.monotonic()
            await self._deliver(sb.code_w, payload(request.code, request.args))
            res = await self._watch(
                sb.spawned, sb.ws, request.limits, request.stdin, handle, on_output, sb.cg, started, sb.leave_init
            )
        except BaseException:
            handle.cgroup = None
            await self._tear_down_taken(sb)
            raise
        handle.cgroup = None
        task = asyncio.create_task(self._tear_down_taken(sb))
        self._teardowns.add(task)
        task.add_done_callback(self._teardowns.discard)
        return _outcome(res, b"", 0)

    async def _tear_down_taken(self, sb: _Warm) -> None:
        """Reap a taken sandbox's init, remove its cgroup and workspace, then free its host uid for a new one."""
        try:
            if not sb.destroyed:
                sb.destroyed = True
                try:
                    if sb.init_pid is not None:
                        await reap(sb.init_pid)
                    await sb.cg.remove()
                finally:
                    await _off_loop(sb.ws.destroy)
        except Exception:
            log.exception("warm_teardown_failed", uid=sb.uid)
            raise
        finally:
            assert self._pool is not None
            self._pool.release_uid(sb.uid)

    async def settled(self) -> None:
        """Wait until every finished run's sandbox has been torn down."""
        while self._teardowns:
            await asyncio.gather(*list(self._teardowns), return_exceptions=True)

    @staticmethod
    async def _deliver(fd: int, data: bytes) -> None:
        """Write the program to the sandbox's pipe and close it; what does not fit at once goes from a thread."""
        try:
            os.set_blocking(fd, False)
            view = memoryview(data)
            with contextlib.suppress(BlockingIOError):
                while view:
                    view = view[os.write(fd, view) :]
            if view:
                os.set_blocking(fd, True)
                await asyncio.to_thread(_write_all, fd, bytes(view))
        except BrokenPipeError:
            pass  # the sandbox is gone; supervising it classifies the run
        finally:
            os.close(fd)

    async def _start_warm(self, key: PoolKey, uid: int) -> _Warm:
        """Build a sandbox as a cold run of `key` would be built, with the interpreter on the bootstrap."""
        assert self._layout is not None
        lang, limits, cfg = self._languages[key.language], key.limits, self.config
        ws = Workspace(cfg.state_dir, limits.disk_mib, max(64, limits.disk_mib * cfg.inodes_per_mib))
        cg = RunCgroup(self._layout, cfg.cgroup_prefix, f"{ws.run_id}-{int(time.monotonic_ns())}")
        code_w = -1
        try:

            def prepare() -> None:
                ws.create({})
                cg.create()
                cg.set_limits((limits.memory_mib + limits.disk_mib) * 1024 * 1024,
                              limits.processes + BWRAP_OWN_PROCESSES, cfg.cpu_cores)  # fmt: skip

            await _off_loop(prepare)
            code_r, code_w = os.pipe()
            try:
                argv = BOOTS[key.language].program(code_r)
                spawned = await self._spawn(argv, lang, ws, [], limits, uid, False, cg, extra_fds=(code_r,))
            finally:
                os.close(code_r)
        except BaseException:
            if code_w >= 0:
                os.close(code_w)
            try:
                await cg.remove()
            finally:
                await _off_loop(ws.destroy)
            raise
        return _Warm(key, uid, ws, cg, spawned, code_w, time.monotonic())

    async def _destroy_warm(self, sb: _Warm) -> None:
        """Tear down a sandbox that never ran a program (pool shrink, age, close)."""
        if sb.destroyed:
            return
        sb.destroyed = True
        with contextlib.suppress(OSError):
            os.close(sb.code_w)
        proc = sb.spawned.proc
        try:
            sb.cg.kill(spare=proc.pid)
            try:
                await asyncio.wait_for(proc.communicate(), 2.0)
            except TimeoutError:
                sb.cg.kill()
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
            status = self._read_status(sb.spawned.status_r)
            if sb.spawned.init_r >= 0:
                self._read_status(sb.spawned.init_r)
            if "child-pid" in status:
                await reap(status["child-pid"])
            await sb.cg.remove()
        finally:
            sb.ws.destroy()

    async def _compiled(
        self, lang: Language, files: dict[str, bytes], slot: int, handle: _Handle
    ) -> tuple[list[Artifact], bytes, int] | Outcome:
        """The program's artifacts from the compile cache, or from a compile phase that fills it.

        Returns (artifacts, compile output, compile ms), or the final Outcome when it did not compile.
        """
        started = time.monotonic()
        probe = await self._toolchain(lang, slot)
        if not probe.info.available:
            return _error_outcome(f"language {lang.name!r} is not available on this host (its version probe failed)")
        climits = lang.compile_limits
        argv = lang.compile_argv(files, climits.memory_mib)
        assert argv is not None
        key = cache_key(lang.name, probe.output, argv, lang.env, files)
        cached = await asyncio.to_thread(self._cache.lookup, key)
        if cached is not None:
            try:
                check_artifacts(cached, lang.run_artifacts())
            except (ArtifactError, OSError):
                await asyncio.to_thread(self._cache.remove, key)  # stored before the check existed: compile again
                cached = None
        if cached is not None:
            record_compile_cache(lang.name, hit=True)
            return self._prefixed(lang, cached), b"", int((time.monotonic() - started) * 1000)
        record_compile_cache(lang.name, hit=False)
        inodes = max(64, climits.disk_mib * self.config.inodes_per_mib)
        ws = Workspace(self.config.state_dir, climits.disk_mib, inodes)
        binds = ws.create(files, empty_dirs=[lang.artifacts_dir])
        try:
            cres = await self._phase(argv, lang, ws, binds, climits, b"", slot, handle, None, network=False)
            compile_output = cres.stdout + cres.stderr
            compile_ms = int((time.monotonic() - started) * 1000)
            if cres.verdict.state is not State.SUCCEEDED:
                state = cres.verdict.state
                if state not in (State.CANCELLED, State.ERROR):
                    state = State.COMPILE_ERROR
                return Outcome(
                    state, cres.verdict.limit, cres.verdict.exit_code, cres.verdict.signal, b"", b"",
                    compile_output, False, False, cres.cpu_time_ms, cres.memory_peak_kib, compile_ms, 0,
                    cres.verdict.error,
                )  # fmt: skip
            # The compile's processes are all dead (its cgroup is gone): nothing changes the tree now.
            out_dir = os.path.join(ws.work, lang.artifacts_dir)
            prefix = "" if lang.artifacts_dir == "." else lang.artifacts_dir + "/"
            mount_points = [n[len(prefix) :] for n in files if n.startswith(prefix)]
            try:
                stored = await asyncio.to_thread(self._cache.collect, key, out_dir, mount_points)
                try:
                    check_artifacts(stored, lang.run_artifacts())
                except ArtifactError:
                    await asyncio.to_thread(self._cache.remove, key)
                    raise
            except ArtifactError as exc:
                message = f"\n[aevatar-sandbox] the compiler's output cannot be used: {exc}\n".encode()
                return Outcome(
                    State.COMPILE_ERROR, None, cres.verdict.exit_code, None, b"", b"", compile_output + message,
                    False, False, cres.cpu_time_ms, cres.memory_peak_kib, compile_ms, 0,
                )  # fmt: skip
            except OSError as exc:
                raise SandboxSetupError(f"cannot store the compile artifacts: {exc}") from exc
        finally:
            ws.destroy()
        evicted = await asyncio.to_thread(self._cache.evict)
        if evicted:
            COMPILE_CACHE_EVICTIONS.inc(len(evicted))
        return self._prefixed(lang, stored), compile_output, int((time.monotonic() - started) * 1000)

    @staticmethod
    def _prefixed(lang: Language, artifacts: list[Artifact]) -> list[Artifact]:
        if lang.artifacts_dir == ".":
            return artifacts
        return [replace(a, rel=f"{lang.artifacts_dir}/{a.rel}") for a in artifacts]

    def _check_args(self, args: Sequence[str]) -> None:
        sizes = [len(a.encode()) + 1 for a in args]
        if any("\x00" in a for a in args):
            raise InvalidRequest("invalid request: an argument contains a NUL byte")
        if any(n > self.config.max_arg_bytes for n in sizes) or sum(sizes) > self.config.max_args_total_bytes:
            raise InvalidRequest("invalid request: an argument or the argument list is too large")

    def _rlimits(self, limits: Limits) -> list[tuple[int, int, int]]:
        cpu_s = max(1, math.ceil(limits.cpu_time_ms / 1000)) + 1  # a backstop: the cgroup poll acts first
        fsize = limits.disk_mib * 1024 * 1024
        return [
            (resource.RLIMIT_CORE, 0, 0),
            (resource.RLIMIT_FSIZE, fsize, fsize),
            (resource.RLIMIT_NOFILE, self.config.nofile, self.config.nofile),
            (resource.RLIMIT_CPU, cpu_s, cpu_s + 1),
        ]

    def _root_symlinks(self) -> list[tuple[str, str]]:
        out = []
        for path in ROOT_SYMLINKS:
            if os.path.islink(path):
                out.append((os.readlink(path), path))
        return out

    async def _phase(
        self,
        argv: list[str],
        lang: Language,
        ws: Workspace,
        binds: Sequence[tuple[str, str]],
        limits: Limits,
        stdin: bytes,
        slot: int,
        handle: _Handle,
        on_output: OnOutput | None,
        network: bool = False,
    ) -> PhaseResult:
        assert self._layout is not None
        if handle.cancelled:
            return PhaseResult(Verdict(State.CANCELLED, None, None, None), b"", b"", False, False, 0, 0, 0)
        cfg = self.config
        cg = RunCgroup(self._layout, cfg.cgroup_prefix, f"{ws.run_id}-{int(time.monotonic_ns())}")
        cg.create()
        try:
            memory_bytes = (limits.memory_mib + limits.disk_mib) * 1024 * 1024  # tmpfs pages are charged here
            cg.set_limits(memory_bytes, limits.processes + BWRAP_OWN_PROCESSES, cfg.cpu_cores)
            handle.cgroup = cg
            handle.kill_reason = KillReason.CANCELLED if handle.cancelled else None
            spawned = await self._spawn(argv, lang, ws, binds, limits, cfg.uid_base + slot, network, cg)
            return await self._watch(spawned, ws, limits, stdin, handle, on_output, cg)
        finally:
            handle.cgroup = None
            await cg.remove()

    async def _spawn(
        self,
        argv: list[str],
        lang: Language,
        ws: Workspace,
        binds: Sequence[tuple[str, str]],
        limits: Limits,
        uid: int,
        network: bool,
        cg: RunCgroup,
        extra_fds: Sequence[int] = (),
    ) -> _Spawned:
        """Start bubblewrap in the run's cgroups, as `uid`, on `argv`; `extra_fds` are inherited by the sandbox."""
        cfg = self.config
        if self._bpf is None:
            raise SandboxSetupError("seccomp is unavailable")
        seccomp_fd = bpf_fd(self._bpf)
        status_r, status_w = os.pipe()
        init_r, init_w = os.pipe() if self._init is not None else (-1, -1)
        spec = SandboxSpec(
            program=argv, workspace=ws.disk, seccomp_fd=seccomp_fd, status_fd=status_w,
            toolchain_paths=lang.toolchain_paths, files=binds, root_symlinks=self._root_symlinks(),
            env=lang.env, network=network, hostname=cfg.hostname, sandbox_uid=cfg.sandbox_uid,
            init=self._init, init_status_fd=init_w,
        )  # fmt: skip
        started = time.monotonic()
        rlimits = self._rlimits(limits)
        procs_files = cg.procs_files()
        program = build_argv(cfg.bwrap_path, spec)
        if self._helper is not None:  # vfork + exec of the helper, which joins, limits and drops
            command, preexec = sandbox_exec.argv(self._helper, os.getpid(), uid, procs_files, rlimits, program), None
        else:
            command, preexec = program, functools.partial(_child_setup, procs_files, uid, rlimits)
        try:
            proc = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={},
                close_fds=True,
                pass_fds=(seccomp_fd, status_w, *((init_w,) if init_w >= 0 else ()), *extra_fds),
                start_new_session=True,
                preexec_fn=preexec,
                limit=cfg.read_chunk_bytes,
            )
        except OSError as exc:
            os.close(status_r)
            if init_r >= 0:
                os.close(init_r)
            raise SandboxSetupError(f"cannot start bubblewrap: {exc}") from exc
        finally:
            os.close(seccomp_fd)
            os.close(status_w)
            if init_w >= 0:
                os.close(init_w)
        return _Spawned(proc, status_r, started, init_r)

    async def _watch(
        self,
        spawned: _Spawned,
        ws: Workspace,
        limits: Limits,
        stdin: bytes,
        handle: _Handle,
        on_output: OnOutput | None,
        cg: RunCgroup,
        started: float | None = None,
        defer_reap: Callable[[int], None] | None = None,
    ) -> PhaseResult:
        """Feed stdin, pump the output, enforce the limits until the sandbox ends; then kill and account.

        `defer_reap`: given the pid of the sandbox's init to reap after the outcome is out, instead
        of reaping it here (killed and past closing its pipes by then; what is left is a zombie).

        `started`: when the run's wall clock starts (default: when bubblewrap was spawned).
        """
        cfg = self.config
        proc, status_r = spawned.proc, spawned.status_r
        started = spawned.started if started is None else started
        capture = Capture(limits.output_bytes)

        async def pump(stream: Stream, reader: asyncio.StreamReader) -> None:
            while chunk := await reader.read(cfg.read_chunk_bytes):
                kept, offset = capture.add(stream, chunk)
                if kept and on_output is not None:
                    await on_output(OutputChunk(stream, kept, offset))
                if capture.overflowed and handle.kill_reason is None:
                    handle.kill(KillReason.OUTPUT)

        async def feed(writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, BrokenPipeError):
                if stdin:
                    writer.write(stdin)
                    await writer.drain()
            with contextlib.suppress(ConnectionError, BrokenPipeError, OSError):
                writer.close()
                await writer.wait_closed()

        handle.monitor_pid = proc.pid
        assert proc.stdout is not None and proc.stderr is not None and proc.stdin is not None
        readers = [
            asyncio.ensure_future(pump("stdout", proc.stdout)),
            asyncio.ensure_future(pump("stderr", proc.stderr)),
        ]
        feeder = asyncio.ensure_future(feed(proc.stdin))
        waiter = exited(proc)
        cpu_limit_ns = limits.cpu_time_ms * 1_000_000
        deadline = started + limits.wall_time_ms / 1000
        poll = cfg.poll_interval_ms / 1000
        try:
            while not waiter.done():
                await asyncio.wait({waiter}, timeout=poll)
                if waiter.done():
                    break
                if handle.kill_reason is not None:
                    cg.kill(spare=proc.pid)  # keep killing: a fork racing the first kill is caught on the next pass
                    continue
                if cg.stats().cpu_usage_ns >= cpu_limit_ns:
                    handle.kill(KillReason.CPU_TIME)
                elif time.monotonic() >= deadline:
                    handle.kill(KillReason.WALL_TIME)
                ws.usage()
        finally:
            wall_ms = int((time.monotonic() - started) * 1000)
            ws.usage()
            # Every process of the run is in the cgroup; once it is dead, every pipe writer is gone.
            if not waiter.done():
                # bubblewrap's monitor is spared so that it reaps the sandbox's init, then it exits.
                cg.kill(spare=proc.pid)
                await asyncio.wait({waiter}, timeout=2.0)
            # The monitor is gone (the usual case: the program ended): nothing to spare, so the kill
            # needs no freeze (cgroup.kill where there is one); its orphaned init comes back to us.
            handle.monitor_pid = None
            cg.kill()
            done, pending = await asyncio.wait([*readers, feeder], timeout=2.0)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if not waiter.done():
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiter
            status = self._read_status(status_r)
            init_status = self._read_status(spawned.init_r) if spawned.init_r >= 0 else None
            if "child-pid" in status:  # its orphaned init
                if defer_reap is not None:
                    defer_reap(status["child-pid"])
                else:
                    await reap(status["child-pid"])
        for task in done:
            if task.exception() is not None and not isinstance(task.exception(), ConnectionError):
                raise task.exception()  # type: ignore[misc]
        stats = cg.stats()
        returncode = waiter.result() if waiter.done() and not waiter.cancelled() else proc.returncode
        stdout, stderr = bytes(capture.data["stdout"]), bytes(capture.data["stderr"])
        wait_status = init_status.get("wait-status") if init_status is not None else None
        setup_error = _setup_error(status, init_status, handle.kill_reason, stats.oom_kills, stderr)
        evidence = Evidence(
            returncode=returncode, setup_error=setup_error, kill_reason=handle.kill_reason,
            oom_kills=stats.oom_kills, pids_max_hits=stats.pids_max_hits, disk_full=ws.ever_full,
            cpu_time_ns=stats.cpu_usage_ns, cpu_limit_ns=cpu_limit_ns, wait_status=wait_status,
        )  # fmt: skip
        ws.ever_full = False
        return PhaseResult(
            classify(evidence), stdout, stderr, capture.truncated["stdout"], capture.truncated["stderr"],
            stats.cpu_usage_ns // 1_000_000, stats.memory_peak_bytes // 1024, wall_ms,
        )  # fmt: skip

    @staticmethod
    def _read_status(fd: int) -> dict[str, int]:
        """bwrap's --json-status-fd lines (child-pid, namespaces, exit-code); bounded, non-blocking."""
        out: dict[str, int] = {}
        try:
            os.set_blocking(fd, False)
            buf = b""
            with contextlib.suppress(BlockingIOError):
                while len(buf) < 65536 and (chunk := os.read(fd, 4096)):
                    buf += chunk
        finally:
            os.close(fd)
        for line in buf.splitlines():
            with contextlib.suppress(ValueError):
                obj = json.loads(line)
                if isinstance(obj, dict):
                    out.update({k: v for k, v in obj.items() if isinstance(v, int)})
        return out
