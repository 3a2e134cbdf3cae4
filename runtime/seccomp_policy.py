"""The seccomp policy: a pure rule list, and its compilation to BPF with libseccomp.

The default action is ALLOW: the namespaces, cgroups and a non-root uid do the
containing, and this filter removes the kernel attack surface a program has no
business touching. Every denied call answers an errno (not a kill), so a hostile
program sees a clean failure and the test suite can assert on it.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

# Namespace flags a program must not pass to clone(2).
CLONE_NEW_FLAGS = (
    0x00020000  # CLONE_NEWNS
    | 0x02000000  # CLONE_NEWCGROUP
    | 0x04000000  # CLONE_NEWUTS
    | 0x08000000  # CLONE_NEWIPC
    | 0x10000000  # CLONE_NEWUSER
    | 0x20000000  # CLONE_NEWPID
    | 0x40000000  # CLONE_NEWNET
    | 0x00000080  # CLONE_NEWTIME
)
TIOCSTI = 0x5412
TIOCLINUX = 0x541C

# socket(2) families a program may open: local sockets and IP (which the run's own network
# namespace confines), and netlink for NETLINK_ROUTE only (getifaddrs, glibc's getaddrinfo with
# AI_ADDRCONFIG, Go's and Node's interface listing: namespaced, read-only without CAP_NET_ADMIN).
# Every other family answers EAFNOSUPPORT, as the kernel does for one it lacks: notably AF_VSOCK
# (not namespaced; on a virtual machine it reaches the hypervisor), AF_PACKET, AF_BLUETOOTH, AF_ALG.
AF_UNIX, AF_INET, AF_INET6, AF_NETLINK = 1, 2, 10, 16
NETLINK_ROUTE = 0
ALLOWED_SOCKET_FAMILIES = frozenset({AF_UNIX, AF_INET, AF_INET6, AF_NETLINK})
# Families are ints below AF_MAX (46 on Linux 6.x; the kernel refuses the rest itself). Denied
# one by one up to 63, and any value with a bit above 63 set, so a family added later is denied too.
_FAMILY_BITS = 32  # the kernel reads an int: only the low 32 bits of the argument count
NETLINK_PROTOCOLS = 32  # MAX_LINKS

DENIED_SYSCALLS: tuple[str, ...] = (
    # mounts and namespaces
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns",
    "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
    # other processes' memory
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd",
    # kernel keyrings, bpf, perf, userfaultfd, io_uring
    "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    # kexec and modules
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    # clocks
    "clock_settime", "clock_adjtime", "adjtimex", "settimeofday",
    # host administration
    "reboot", "swapon", "swapoff", "acct", "syslog", "quotactl", "iopl", "ioperm",
    "open_by_handle_at", "name_to_handle_at", "lookup_dcookie", "fanotify_init",
    "nfsservctl", "vhangup", "personality",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Rule:
    """One filter rule. `arg` is (index, mask, value): match when (argN & mask) == value."""

    syscall: str
    errno: int
    arg: tuple[int, int, int] | None = None
    also: tuple[tuple[int, int, int], ...] = ()  # further (index, mask, value) conditions, all required


def rules() -> list[Rule]:
    out = [Rule(name, errno.EPERM) for name in DENIED_SYSCALLS]
    out.append(Rule("clone3", errno.ENOSYS))  # its flags live in memory we cannot inspect; libc falls back
    for bit in _bits(CLONE_NEW_FLAGS):
        out.append(Rule("clone", errno.EPERM, (0, bit, bit)))
    # ioctl's request is an int: compare the low 32 bits only, so high garbage cannot slip past.
    out.append(Rule("ioctl", errno.EPERM, (1, 0xFFFFFFFF, TIOCSTI)))
    out.append(Rule("ioctl", errno.EPERM, (1, 0xFFFFFFFF, TIOCLINUX)))
    out += socket_rules()
    return out


def socket_rules() -> list[Rule]:
    """socket(2) for the allowed families only; netlink for NETLINK_ROUTE only."""
    low = 0xFFFFFFFF
    out = [Rule("socket", errno.EAFNOSUPPORT, (0, low, f)) for f in range(64) if f not in ALLOWED_SOCKET_FAMILIES]
    out += [Rule("socket", errno.EAFNOSUPPORT, (0, bit, bit)) for bit in (1 << i for i in range(6, _FAMILY_BITS))]
    out += [
        Rule("socket", errno.EPROTONOSUPPORT, (0, low, AF_NETLINK), ((2, low, p),))
        for p in range(NETLINK_PROTOCOLS)
        if p != NETLINK_ROUTE
    ]
    out += [
        Rule("socket", errno.EPROTONOSUPPORT, (0, low, AF_NETLINK), ((2, bit, bit),))
        for bit in (1 << i for i in range(5, _FAMILY_BITS))
    ]
    return out


def _bits(mask: int) -> list[int]:
    return [1 << i for i in range(mask.bit_length()) if mask & (1 << i)]


def compile_bpf() -> bytes:
    """Build the filter with libseccomp (pyseccomp) for the native arch; other arches are killed."""
    import pyseccomp as sc

    f = sc.SyscallFilter(sc.ALLOW)
    f.set_attr(sc.Attr.CTL_NNP, 1)
    f.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
    for rule in rules():
        if rule.arg is None:
            f.add_rule(sc.ERRNO(rule.errno), rule.syscall)
        else:
            conditions = [sc.Arg(i, sc.MASKED_EQ, m, v) for i, m, v in (rule.arg, *rule.also)]
            f.add_rule(sc.ERRNO(rule.errno), rule.syscall, *conditions)
    fd = os.memfd_create("aevatar-seccomp-export", os.MFD_CLOEXEC)
    try:
        with os.fdopen(os.dup(fd), "wb") as wf:
            f.export_bpf(wf)
        size = os.lseek(fd, 0, os.SEEK_END)
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)


def bpf_fd(program: bytes) -> int:
    """A sealed-in-spirit memfd holding `program`, positioned at 0, for `bwrap --seccomp FD`."""
    fd = os.memfd_create("aevatar-seccomp", os.MFD_CLOEXEC)
    os.write(fd, program)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def libseccomp_version() -> str | None:
    """libseccomp's version through its C API, or None when the library cannot be loaded."""
    import ctypes
    import ctypes.util

    class _Version(ctypes.Structure):
        _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]

    name = ctypes.util.find_library("seccomp")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    lib.seccomp_version.restype = ctypes.POINTER(_Version)
    v = lib.seccomp_version().contents
    return f"{v.major}.{v.minor}.{v.micro}"
