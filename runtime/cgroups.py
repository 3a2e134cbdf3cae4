"""cgroups for one run: v2 where the controller is on the unified hierarchy, else v1.

Each of memory, pids and cpu is placed independently: a host can have a cgroup2
mount whose controllers are still bound to v1 hierarchies (this machine does). The
unified hierarchy, when mounted, also tracks the run's processes and kills them in
one write (`cgroup.kill`); without it, the v1 freezer freezes, kills and thaws.

Parsing and layout discovery are pure functions; `RunCgroup` is the I/O edge.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import os
import signal
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

from runtime.errors import SandboxSetupError

MS_REMOUNT = 32
_LIBC = ctypes.CDLL(None, use_errno=True)

V1_NEEDED = ("memory", "pids", "cpu", "cpuacct", "freezer")
LIMIT_CONTROLLERS = ("memory", "pids", "cpu")
CgroupMode = Literal["auto", "v1"]


@dataclass(frozen=True, slots=True)
class CgroupLayout:
    """Where this supervisor's cgroups live, per hierarchy (directories, already joined with own path)."""

    v2_dir: str | None = None
    v2_controllers: frozenset[str] = frozenset()
    v2_kill: bool = False
    v1_dirs: Mapping[str, str] = field(default_factory=dict)
    v1_memsw: bool = False

    def version_for(self, controller: str) -> Literal["v2", "v1"] | None:
        if self.v2_dir is not None and controller in self.v2_controllers:
            return "v2"
        if controller in self.v1_dirs:
            return "v1"
        return None

    def only_v1(self) -> CgroupLayout:
        return CgroupLayout(None, frozenset(), False, dict(self.v1_dirs), self.v1_memsw)


def parse_flat_keyed(text: str) -> dict[str, int]:
    """Parse `key value` lines (memory.events, pids.events, cpu.stat, memory.oom_control)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            with contextlib.suppress(ValueError):
                out[parts[0]] = int(parts[1])
    return out


def parse_mountinfo(text: str) -> tuple[dict[str, tuple[str, str]], tuple[str, str] | None]:
    """v1 controller → (mount point, mount root) and the cgroup2 (mount point, mount root)."""
    v1: dict[str, tuple[str, str]] = {}
    v2: tuple[str, str] | None = None
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        lf, rf = left.split(), right.split()
        if len(lf) < 5 or len(rf) < 3:
            continue
        root, mount_point, fstype, super_opts = lf[3], lf[4], rf[0], rf[2]
        if fstype == "cgroup2" and v2 is None:
            v2 = (mount_point, root)
        elif fstype == "cgroup":
            for opt in super_opts.split(","):
                if opt in V1_NEEDED and opt not in v1:
                    v1[opt] = (mount_point, root)
    return v1, v2


def parse_proc_cgroup(text: str) -> tuple[dict[str, str], str | None]:
    """/proc/<pid>/cgroup → v1 controller → path, and the v2 path."""
    v1: dict[str, str] = {}
    v2: str | None = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            v2 = parts[2]
        else:
            for ctrl in parts[1].split(","):
                v1[ctrl] = parts[2]
    return v1, v2


def _join(mount_point: str, mount_root: str, own: str) -> str:
    rel = own
    if mount_root != "/" and (own == mount_root or own.startswith(mount_root + "/")):
        rel = own[len(mount_root) :]
    return os.path.join(mount_point, rel.lstrip("/")).rstrip("/") or "/"


def discover(mountinfo: str, proc_cgroup: str, exists: dict[str, bool] | None = None) -> CgroupLayout:
    """Pure: the layout from /proc/self/mountinfo and /proc/self/cgroup (`exists` overrides file checks)."""
    v1_mounts, v2_mount = parse_mountinfo(mountinfo)
    own_v1, own_v2 = parse_proc_cgroup(proc_cgroup)
    v1_dirs = {c: _join(mp, root, own_v1.get(c, "/")) for c, (mp, root) in v1_mounts.items()}
    v2_dir = _join(v2_mount[0], v2_mount[1], own_v2 or "/") if v2_mount else None
    controllers: frozenset[str] = frozenset()
    v2_kill = False
    memsw = False

    def _exists(path: str) -> bool:
        return exists[path] if exists is not None and path in exists else os.path.exists(path)

    if v2_dir is not None:
        with contextlib.suppress(OSError), open(os.path.join(v2_dir, "cgroup.controllers")) as f:
            controllers = frozenset(f.read().split())
        # The root cgroup has no cgroup.kill file, but its children have one from Linux 5.14 on.
        v2_kill = _exists(os.path.join(v2_dir, "cgroup.kill")) or _kernel_at_least(5, 14)
    if "memory" in v1_dirs:
        memsw = _exists(os.path.join(v1_dirs["memory"], "memory.memsw.limit_in_bytes"))
    return CgroupLayout(v2_dir, controllers, v2_kill, v1_dirs, memsw)


def _kernel_at_least(major: int, minor: int) -> bool:
    try:
        parts = os.uname().release.split("-")[0].split(".")
        return (int(parts[0]), int(parts[1])) >= (major, minor)
    except (ValueError, IndexError):
        return False


def discover_host(mode: CgroupMode = "auto") -> CgroupLayout:
    with open("/proc/self/mountinfo") as f:
        mountinfo = f.read()
    with open("/proc/self/cgroup") as f:
        proc_cgroup = f.read()
    layout = discover(mountinfo, proc_cgroup)
    return layout.only_v1() if mode == "v1" else layout


@dataclass(frozen=True, slots=True)
class Remount:
    """One cgroup2 mount changed by `favor_dynmods`: what it had, and what it was given."""

    mount_point: str
    original: str  # the hierarchy's own options before (rw/ro left out), e.g. "nsdelegate,memory_recursiveprot"
    options: str  # the same with favordynmods added


def cgroup2_options(mountinfo: str) -> list[tuple[str, str]]:
    """Pure: (mount point, super options without rw/ro) of each cgroup2 mount, in mountinfo order."""
    out = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        lf, rf = left.split(), right.split()
        if len(lf) < 5 or len(rf) < 3 or rf[0] != "cgroup2":
            continue
        out.append((lf[4], ",".join(o for o in rf[2].split(",") if o not in ("rw", "ro"))))
    return out


def favordynmods_remounts(mountinfo: str) -> list[Remount]:
    """Pure: the remount each cgroup2 hierarchy not mounted with `favordynmods` needs.

    The options keep the hierarchy's own (nsdelegate, memory_recursiveprot, ...): a cgroup2
    remount resets every flag it is not given, so `original` is also what restores it.
    """
    out = []
    for mount_point, original in cgroup2_options(mountinfo):
        options = [o for o in original.split(",") if o]
        if "favordynmods" not in options:
            out.append(Remount(mount_point, original, ",".join([*options, "favordynmods"])))
    return out


def _option_set(options: str) -> frozenset[str]:
    return frozenset(o for o in options.split(",") if o)  # the kernel prints them in its own order


def remount(target: str, options: str) -> None:
    """Remount the cgroup2 hierarchy at `target` with exactly `options` (every other flag is reset)."""
    if _LIBC.mount(b"none", target.encode(), None, MS_REMOUNT, options.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"remount {target} with {options!r}: {os.strerror(err)}")


def _mountinfo() -> str:
    with open("/proc/self/mountinfo") as f:
        return f.read()


def favor_dynmods() -> list[Remount]:
    """Remount each cgroup2 hierarchy with `favordynmods` (Linux 6.0+); what was changed, to restore.

    A host-wide change, so opt-in (LocalBackendConfig.cgroup_favor_dynmods, off by default), and
    undone by `restore_mounts` at the backend's close. Moving a process into a cgroup takes the
    kernel's global threadgroup lock for writing, which waits for an RCU grace period unless that
    lock is kept in its slow-reader mode (favordynmods). Every sandbox start moves a process into the
    run's cgroups, and while it waits the cgroup mutex is held: every other cgroup write (a kill, a
    removal) and every fork on the host waits too. favordynmods makes forks and exits slightly dearer
    in exchange (kernel docs, admin-guide/cgroup-v2); bench/favordynmods.py measures both sides.
    Raises OSError when the kernel refuses (older than 6.0, no privilege), after undoing its own.
    """
    done: list[Remount] = []
    for change in favordynmods_remounts(_mountinfo()):
        try:
            remount(change.mount_point, change.options)
        except OSError:
            restore_mounts(done)
            raise
        done.append(change)
    return done


def restore_mounts(remounts: list[Remount]) -> list[str]:
    """Give each remounted hierarchy its original options back; the mount points restored.

    One whose options are no longer the ones `favor_dynmods` set (someone changed them since) is
    left as it is. Raises OSError (after trying every one) when a remount is refused.
    """
    current = {point: _option_set(options) for point, options in cgroup2_options(_mountinfo())}
    restored: list[str] = []
    failed: list[OSError] = []
    for change in remounts:
        if current.get(change.mount_point) != _option_set(change.options):
            continue
        try:
            remount(change.mount_point, change.original)
        except OSError as exc:
            failed.append(exc)
        else:
            restored.append(change.mount_point)
    if failed:
        raise failed[0]
    return restored


@dataclass(frozen=True, slots=True)
class CgroupStats:
    cpu_usage_ns: int = 0
    memory_peak_bytes: int = 0
    oom_kills: int = 0
    pids_max_hits: int = 0


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


class RunCgroup:
    """The cgroups of one sandbox phase: create, limit, join (from the child), observe, kill, remove."""

    def __init__(self, layout: CgroupLayout, prefix: str, name: str) -> None:
        self.layout = layout
        self.dirs: dict[str, str] = {}  # hierarchy key ("v2" or a v1 controller) → run directory
        self._prefix = prefix
        self._name = name
        if layout.v2_dir is not None:
            self.dirs["v2"] = os.path.join(layout.v2_dir, prefix, name)
        for ctrl in V1_NEEDED:
            if ctrl in layout.v1_dirs and (ctrl in ("cpuacct", "freezer") or layout.version_for(ctrl) == "v1"):
                self.dirs[ctrl] = os.path.join(layout.v1_dirs[ctrl], prefix, name)

    # -- set-up ---------------------------------------------------------------------------------
    def create(self) -> None:
        try:
            for key, path in self.dirs.items():
                parent = os.path.dirname(path)
                os.makedirs(parent, mode=0o755, exist_ok=True)
                if key == "v2" and self.layout.v2_controllers:
                    wanted = [c for c in LIMIT_CONTROLLERS if self.layout.version_for(c) == "v2"]
                    for ctl in (os.path.dirname(parent), parent):
                        with contextlib.suppress(OSError):
                            _write(os.path.join(ctl, "cgroup.subtree_control"), " ".join("+" + c for c in wanted))
                os.mkdir(path, 0o755)
        except OSError as exc:
            self.remove_sync()
            raise SandboxSetupError(f"cannot create cgroup: {exc}") from exc

    def set_limits(self, memory_bytes: int, processes: int, cpu_cores: float) -> None:
        period = 100_000
        quota = max(1000, int(period * cpu_cores))
        try:
            if self.layout.version_for("memory") == "v2":
                d = self.dirs["v2"]
                _write(os.path.join(d, "memory.max"), str(memory_bytes))
                _write(os.path.join(d, "memory.swap.max"), "0")
                with contextlib.suppress(OSError):
                    _write(os.path.join(d, "memory.oom.group"), "1")
            elif "memory" in self.dirs:
                d = self.dirs["memory"]
                _write(os.path.join(d, "memory.limit_in_bytes"), str(memory_bytes))
                if self.layout.v1_memsw:
                    _write(os.path.join(d, "memory.memsw.limit_in_bytes"), str(memory_bytes))
                with contextlib.suppress(OSError):
                    _write(os.path.join(d, "memory.swappiness"), "0")
            pids_dir = self.dirs.get("v2") if self.layout.version_for("pids") == "v2" else self.dirs.get("pids")
            if pids_dir is not None:
                _write(os.path.join(pids_dir, "pids.max"), str(processes))
            if self.layout.version_for("cpu") == "v2":
                _write(os.path.join(self.dirs["v2"], "cpu.max"), f"{quota} {period}")
            elif "cpu" in self.dirs:
                _write(os.path.join(self.dirs["cpu"], "cpu.cfs_period_us"), str(period))
                _write(os.path.join(self.dirs["cpu"], "cpu.cfs_quota_us"), str(quota))
        except OSError as exc:
            raise SandboxSetupError(f"cannot set cgroup limits: {exc}") from exc

    def procs_files(self) -> list[str]:
        """The cgroup.procs files the child writes "0" into, before it drops privileges."""
        return [os.path.join(d, "cgroup.procs") for d in self.dirs.values()]

    # -- observation ----------------------------------------------------------------------------
    def stats(self) -> CgroupStats:
        cpu_ns = 0
        if "v2" in self.dirs:
            cpu_ns = parse_flat_keyed(_read(os.path.join(self.dirs["v2"], "cpu.stat"))).get("usage_usec", 0) * 1000
        elif "cpuacct" in self.dirs:
            with contextlib.suppress(ValueError):
                cpu_ns = int(_read(os.path.join(self.dirs["cpuacct"], "cpuacct.usage")).strip() or 0)
        peak = oom = pids_hits = 0
        if self.layout.version_for("memory") == "v2":
            d = self.dirs["v2"]
            with contextlib.suppress(ValueError):
                peak = int(_read(os.path.join(d, "memory.peak")).strip() or 0)
            oom = parse_flat_keyed(_read(os.path.join(d, "memory.events"))).get("oom_kill", 0)
        elif "memory" in self.dirs:
            d = self.dirs["memory"]
            with contextlib.suppress(ValueError):
                peak = int(_read(os.path.join(d, "memory.max_usage_in_bytes")).strip() or 0)
            oom = parse_flat_keyed(_read(os.path.join(d, "memory.oom_control"))).get("oom_kill", 0)
        pids_dir = self.dirs.get("v2") if self.layout.version_for("pids") == "v2" else self.dirs.get("pids")
        if pids_dir is not None:
            pids_hits = parse_flat_keyed(_read(os.path.join(pids_dir, "pids.events"))).get("max", 0)
        return CgroupStats(cpu_ns, peak, oom, pids_hits)

    def pids(self) -> set[int]:
        found: set[int] = set()
        for d in self.dirs.values():
            for tok in _read(os.path.join(d, "cgroup.procs")).split():
                with contextlib.suppress(ValueError):
                    found.add(int(tok))
        return found

    # -- teardown -------------------------------------------------------------------------------
    def kill(self, spare: int | None = None) -> None:
        """SIGKILL every process of the run, including any it forked or orphaned.

        `spare` is the supervisor's own child (bubblewrap's monitor): killing it together with
        the sandbox's init would orphan that init to the host's pid 1 as a zombie. Spared, it
        reaps the init (whose death tears down the pid namespace) and exits by itself.
        """
        if spare is None and "v2" in self.dirs and self.layout.v2_kill:
            with contextlib.suppress(FileNotFoundError):
                _write(os.path.join(self.dirs["v2"], "cgroup.kill"), "1")
                return
        with self._frozen():
            for pid in self.pids():
                if pid != spare:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)

    @contextlib.contextmanager
    def _frozen(self) -> Iterator[None]:
        """Freeze the run (v2 cgroup.freeze, else the v1 freezer) so nothing forks while we kill."""
        if "v2" in self.dirs and os.path.exists(os.path.join(self.dirs["v2"], "cgroup.freeze")):
            state, done, thaw = (
                os.path.join(self.dirs["v2"], f) for f in ("cgroup.freeze", "cgroup.events", "cgroup.freeze")
            )
            frozen_value, thawed_value = "1", "0"

            def is_frozen() -> bool:
                return parse_flat_keyed(_read(done)).get("frozen", 0) == 1
        elif "freezer" in self.dirs:
            state = thaw = os.path.join(self.dirs["freezer"], "freezer.state")
            frozen_value, thawed_value = "FROZEN", "THAWED"

            def is_frozen() -> bool:
                return _read(state).strip() == "FROZEN"
        else:
            yield
            return
        try:
            with contextlib.suppress(OSError):
                _write(state, frozen_value)
                deadline = time.monotonic() + 0.2
                while not is_frozen() and time.monotonic() < deadline:
                    time.sleep(0.001)
            yield
        finally:
            with contextlib.suppress(OSError):
                _write(thaw, thawed_value)

    async def remove(self, timeout_s: float = 5.0) -> None:
        """Kill until empty, then rmdir every directory (EBUSY right after exit is retried)."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.pids():
                self.kill()
            elif self.remove_sync():
                return
            if time.monotonic() > deadline:
                raise SandboxSetupError(f"cgroup {self._name} did not empty: pids {sorted(self.pids())}")
            await asyncio.sleep(0.005)

    def remove_sync(self) -> bool:
        ok = True
        for path in self.dirs.values():
            try:
                os.rmdir(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                    raise
                ok = False
        return ok
