"""Which isolation features this host supports: a probe (I/O) and a text renderer (pure).

Each namespace is checked by actually asking bubblewrap for it, as the unprivileged
uid the runs use; cgroup controllers by where they are mounted; seccomp by loading
libseccomp, compiling the policy and having bubblewrap install it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

from runtime import sandbox_exec
from runtime.cgroups import CgroupMode, discover_host, favordynmods_remounts
from runtime.reaper import reap_sync, set_subreaper

NAMESPACES = ("user", "pid", "net", "ipc", "uts", "cgroup")
DEFAULT_REQUIRED: frozenset[str] = frozenset(
    {
        "supervisor.root",
        "bubblewrap",
        *(f"namespace.{ns}" for ns in NAMESPACES),
        "cgroup.memory",
        "cgroup.pids",
        "cgroup.cpu",
        "cgroup.cpu_accounting",
        "cgroup.kill",
        "seccomp",
    }
)
_PROBE_BINDS = ("--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
                "--symlink", "usr/bin", "/bin")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Feature:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class DoctorReport:
    features: tuple[Feature, ...]
    required: frozenset[str]

    def feature_ok(self, name: str) -> bool:
        return any(f.name == name and f.ok for f in self.features)

    def missing_required(self) -> list[str]:
        known = {f.name: f for f in self.features}
        return sorted(n for n in self.required if n not in known or not known[n].ok)

    @property
    def ok(self) -> bool:
        return not self.missing_required()


def render(report: DoctorReport) -> str:
    """Pure: the report as aligned text, with a verdict line at the end."""
    width = max(len(f.name) for f in report.features) if report.features else 10
    lines = ["Aevatar Sandbox — isolation features on this host", ""]
    for f in report.features:
        mark = "ok     " if f.ok else ("MISSING" if f.name in report.required else "off    ")
        need = "required" if f.name in report.required else "optional"
        lines.append(f"  {mark}  {f.name.ljust(width)}  {need:8}  {f.detail}")
    lines.append("")
    missing = report.missing_required()
    if missing:
        lines.append("REFUSING to run code: required feature(s) missing: " + ", ".join(missing))
        lines.append("The local backend will not fall back to weaker isolation.")
    else:
        lines.append("All required isolation features are present: the local backend will run code.")
    return "\n".join(lines)


def _drop(uid: int) -> None:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def _bwrap_ok(bwrap: str, uid: int, extra: Iterable[str], pass_fds: tuple[int, ...] = ()) -> tuple[bool, str]:
    status_r, status_w = os.pipe()
    argv = [bwrap, *extra, "--json-status-fd", str(status_w), *_PROBE_BINDS, "--", "/usr/bin/true"]
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            timeout=10,
            env={},
            pass_fds=(*pass_fds, status_w),
            preexec_fn=(lambda: _drop(uid)) if os.geteuid() == 0 else None,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    finally:
        os.close(status_w)
        with os.fdopen(status_r, "rb") as f:
            m = re.search(rb'"child-pid": *(\d+)', f.read(65536))
        if m:
            reap_sync(int(m.group(1)), 1.0)
    if done.returncode == 0:
        return True, ""
    return False, done.stderr.decode("utf-8", "replace").strip()[:200] or f"exit {done.returncode}"


def probe(
    bwrap: str = "/usr/bin/bwrap",
    uid: int = 61000,
    cgroup_mode: CgroupMode = "auto",
    required: frozenset[str] = DEFAULT_REQUIRED,
    favordynmods_measured: str = "",
) -> DoctorReport:
    """`favordynmods_measured`: the last measured benefit of the opt-in (bench/favordynmods.py), if any."""
    feats: list[Feature] = []
    is_root = os.geteuid() == 0
    set_subreaper()  # so that bubblewrap's orphaned probe inits come back to us to be reaped
    feats.append(
        Feature(
            "supervisor.root",
            is_root,
            "running as root: can create cgroups and drop to per-slot uids"
            if is_root
            else "not root: cannot create cgroups or drop to sandbox uids",
        )
    )
    path = bwrap if os.path.isabs(bwrap) else (shutil.which(bwrap) or bwrap)
    version = None
    if os.access(path, os.X_OK):
        try:
            out = subprocess.run([path, "--version"], capture_output=True, timeout=10, env={}).stdout
            m = re.search(rb"(\d+\.\d+(?:\.\d+)?)", out)
            version = m.group(1).decode() if m else None
        except (OSError, subprocess.TimeoutExpired):
            version = None
    bwrap_ok = version is not None and tuple(int(x) for x in version.split(".")[:2]) >= (0, 8)
    feats.append(
        Feature(
            "bubblewrap",
            bwrap_ok,
            f"{path} version {version}" + ("" if bwrap_ok else " (0.8 or newer is needed)")
            if version
            else f"{path} not found or not runnable",
        )
    )
    for ns in NAMESPACES:
        if not bwrap_ok:
            feats.append(Feature(f"namespace.{ns}", False, "not probed: no usable bubblewrap"))
            continue
        flags = ["--unshare-user", "--disable-userns"] if ns == "user" else ["--unshare-user", f"--unshare-{ns}"]
        ok, why = _bwrap_ok(path, uid, flags)
        feats.append(Feature(f"namespace.{ns}", ok, "unshared by bubblewrap as an unprivileged uid" if ok else why))
    try:
        layout = discover_host(cgroup_mode)
    except OSError as exc:
        feats.append(Feature("cgroup.memory", False, f"cannot read cgroup layout: {exc}"))
        layout = None
    if layout is not None:
        for ctrl in ("memory", "pids", "cpu"):
            where = layout.version_for(ctrl)
            if where == "v2":
                detail = f"cgroup v2 at {layout.v2_dir}"
            elif where == "v1":
                detail = f"cgroup v1 at {layout.v1_dirs[ctrl]}"
                if ctrl == "memory":
                    detail += " (swap accounting: " + ("memsw, swap off" if layout.v1_memsw else "absent") + ")"
            else:
                detail = "not mounted in v1 or v2"
            feats.append(Feature(f"cgroup.{ctrl}", where is not None, detail))
        acct = "v2 cpu.stat" if layout.v2_dir else ("v1 cpuacct" if "cpuacct" in layout.v1_dirs else None)
        feats.append(Feature("cgroup.cpu_accounting", acct is not None, acct or "neither v2 nor v1 cpuacct"))
        if layout.v2_dir and layout.v2_kill:
            kill = f"v2 cgroup.kill on the unified hierarchy at {layout.v2_dir}"
        elif "freezer" in layout.v1_dirs:
            kill = "v1 freezer: freeze, kill every pid, thaw"
        else:
            kill = ""
        feats.append(Feature("cgroup.kill", bool(kill), kill or "no cgroup.kill and no v1 freezer"))
        if layout.v2_dir is not None:
            feats.append(_probe_favordynmods(favordynmods_measured))
    feats.append(_probe_seccomp(path if bwrap_ok else None, uid))
    feats.append(_probe_sandbox_exec())
    return DoctorReport(tuple(feats), required)


def _probe_favordynmods(measured: str) -> Feature:
    """Speed, not isolation, and opt-in: a host-wide remount the backend makes only when asked."""
    with open("/proc/self/mountinfo") as f:
        missing = favordynmods_remounts(f.read())
    benefit = measured or "benefit not measured on this host: python -m bench.favordynmods"
    if not missing:
        return Feature("cgroup.favordynmods", True, f"cgroup2 mounted with favordynmods: fast cgroup moves; {benefit}")
    where = ", ".join(m.mount_point for m in missing)
    return Feature(
        "cgroup.favordynmods",
        False,
        f"{where} without it, left so by default; AEVATAR_SANDBOX_CGROUP_FAVOR_DYNMODS=1 remounts it at the"
        f" executor's start and restores it at close; {benefit}",
    )


def _probe_sandbox_exec() -> Feature:
    """Speed, not isolation: the helper that lets bubblewrap start with vfork instead of a fork of the supervisor."""
    path = sandbox_exec.binary_path()
    if sandbox_exec.trusted(path):
        return Feature("spawn.sandbox_exec", True, f"{path}: bubblewrap starts with vfork")
    return Feature("spawn.sandbox_exec", False, "not built yet; the local backend builds it at start, else forks")


def _probe_seccomp(bwrap: str | None, uid: int) -> Feature:
    from runtime.seccomp_policy import bpf_fd, compile_bpf, libseccomp_version

    try:
        with open("/proc/self/status") as f:
            kernel = "Seccomp:" in f.read()
    except OSError:
        kernel = False
    if not kernel:
        return Feature("seccomp", False, "the kernel does not report seccomp support")
    lib = libseccomp_version()
    if lib is None:
        return Feature("seccomp", False, "libseccomp could not be loaded")
    try:
        program = compile_bpf()
    except Exception as exc:  # pyseccomp raises plain OSError/RuntimeError variants
        return Feature("seccomp", False, f"compiling the filter failed: {exc}")
    if bwrap is None:
        return Feature("seccomp", False, "not probed: no usable bubblewrap")
    fd = bpf_fd(program)
    try:
        ok, why = _bwrap_ok(bwrap, uid, ["--unshare-user", "--seccomp", str(fd)], pass_fds=(fd,))
    finally:
        os.close(fd)
    return Feature(
        "seccomp",
        ok,
        f"libseccomp {lib}, filter of {len(program) // 8} BPF instructions, installed by bubblewrap" if ok else why,
    )
