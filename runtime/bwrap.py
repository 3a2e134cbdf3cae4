"""Pure: the bubblewrap argv for one sandbox phase. No I/O, so every flag is unit-tested."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

# Each namespace is requested explicitly: `--unshare-all` only *tries* some of them.
NAMESPACE_FLAGS: tuple[str, ...] = (
    "--unshare-user",
    "--unshare-pid",
    "--unshare-ipc",
    "--unshare-uts",
    "--unshare-cgroup",
)
NET_FLAG = "--unshare-net"
WORKDIR = "/box"
# Where the sandbox's own init (runtime/sandbox_exec.c, `--init`) is bound, read-only.
INIT_PATH = "/.aevatar-init"

BASE_ENV: Mapping[str, str] = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": WORKDIR,
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
}


@dataclass(frozen=True, slots=True)
class SandboxSpec:
    program: Sequence[str]  # argv inside the sandbox
    workspace: str  # host dir of the run's size-capped tmpfs, holding tmp/ work/ shm/
    seccomp_fd: int
    status_fd: int
    toolchain_paths: Sequence[str] = ()  # bound read-only at the same path
    files: Sequence[tuple[str, str]] = ()  # (host file, path relative to the workdir), read-only
    root_symlinks: Sequence[tuple[str, str]] = ()  # (target, link), e.g. ("usr/lib", "/lib")
    env: Mapping[str, str] = field(default_factory=dict)  # added to BASE_ENV; nothing else is inherited
    network: bool = False
    hostname: str = "sandbox"
    sandbox_uid: int = 1000
    # The host path of the sandbox-exec binary to run as the sandbox's pid 1 (bwrap --as-pid-1),
    # the program's parent, which writes the program's wait status on `init_status_fd`; None:
    # bubblewrap's own init (whose status cannot tell exit(137) from a SIGKILL).
    init: str | None = None
    init_status_fd: int = -1


def build_argv(bwrap: str, spec: SandboxSpec) -> list[str]:
    argv = [bwrap, *NAMESPACE_FLAGS]
    if not spec.network:
        argv.append(NET_FLAG)
    program = list(spec.program)
    if spec.init is not None:
        argv.append("--as-pid-1")
        program = [INIT_PATH, "--init", str(spec.init_status_fd), "--", *program]
    argv += [
        "--disable-userns",  # no further user namespaces inside (bubblewrap >= 0.8)
        "--new-session",
        "--die-with-parent",
        "--uid", str(spec.sandbox_uid),
        "--gid", str(spec.sandbox_uid),
        "--hostname", spec.hostname,
        "--clearenv",
    ]  # fmt: skip
    for key, value in sorted({**BASE_ENV, **spec.env}.items()):
        argv += ["--setenv", key, value]
    for path in sorted(set(spec.toolchain_paths)):
        argv += ["--ro-bind", path, path]
    for target, link in spec.root_symlinks:
        argv += ["--symlink", target, link]
    argv += [
        "--proc", "/proc",
        "--dev", "/dev",
        "--bind", f"{spec.workspace}/tmp", "/tmp",
        "--bind", f"{spec.workspace}/work", WORKDIR,
        "--bind", f"{spec.workspace}/shm", "/dev/shm",
    ]  # fmt: skip
    for host, rel in spec.files:
        argv += ["--ro-bind", host, f"{WORKDIR}/{rel}"]
    if spec.init is not None:
        argv += ["--ro-bind", spec.init, INIT_PATH]
    argv += [
        "--remount-ro", "/",
        "--chdir", WORKDIR,
        "--seccomp", str(spec.seccomp_fd),
        "--json-status-fd", str(spec.status_fd),
        "--",
        *program,
    ]  # fmt: skip
    return argv
