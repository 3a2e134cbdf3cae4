"""The pure core: bwrap argv, seccomp rules, outcome classification, capture, cgroup parsing."""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.bwrap import NAMESPACE_FLAGS, SandboxSpec, build_argv
from runtime.capture import Capture
from runtime.cgroups import (
    CgroupLayout,
    Remount,
    RunCgroup,
    cgroup2_options,
    discover,
    favordynmods_remounts,
    parse_flat_keyed,
)
from runtime.doctor import DoctorReport, Feature, render
from runtime.errors import InvalidRequest
from runtime.languages import LANGUAGES, get
from runtime.outcome import Evidence, KillReason, classify, decode_status
from runtime.seccomp_policy import CLONE_NEW_FLAGS, TIOCLINUX, TIOCSTI, compile_bpf, rules
from runtime.workspace import check_relative_name
from streams.states import Limit, State


def spec(**kw: object) -> SandboxSpec:
    base: dict[str, object] = {
        "program": ["/usr/bin/python3.11", "main.py"],
        "workspace": "/ws",
        "seccomp_fd": 5,
        "status_fd": 6,
        "toolchain_paths": ["/usr/lib/python3.11", "/usr/bin/python3.11"],
    }
    base.update(kw)
    return SandboxSpec(**base)  # type: ignore[arg-type]


def test_argv_requests_every_namespace_explicitly() -> None:
    argv = build_argv("/usr/bin/bwrap", spec())
    for flag in (
        "--unshare-user",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup",
        "--disable-userns",
        "--new-session",
        "--die-with-parent",
        "--clearenv",
    ):
        assert flag in argv, flag
    assert "--unshare-all" not in argv and "--share-net" not in argv
    assert argv[-3:] == ["--", "/usr/bin/python3.11", "main.py"]
    assert set(NAMESPACE_FLAGS) <= set(argv)


def test_argv_mounts_nothing_from_the_host_but_the_toolchain_and_workspace() -> None:
    argv = build_argv("/usr/bin/bwrap", spec(files=[("/ws-src/main.py", "main.py")]))
    sources = [argv[i + 1] for i, a in enumerate(argv) if a in ("--bind", "--ro-bind")]
    assert sources == [
        "/usr/bin/python3.11",
        "/usr/lib/python3.11",
        "/ws/tmp",
        "/ws/work",
        "/ws/shm",
        "/ws-src/main.py",
    ]
    assert not any(s.startswith(("/etc", "/root", "/home", "/work")) for s in sources)
    ro = [argv[i + 1] for i, a in enumerate(argv) if a == "--ro-bind"]
    assert "/ws-src/main.py" in ro
    i = argv.index("--remount-ro")
    assert argv[i + 1] == "/" and i > argv.index("--ro-bind")
    assert argv[argv.index("--seccomp") + 1] == "5" and argv[argv.index("--json-status-fd") + 1] == "6"


def test_argv_environment_is_the_allowlist_plus_language_additions() -> None:
    argv = build_argv("/usr/bin/bwrap", spec(env={"GOCACHE": "/tmp/go"}))
    env = {argv[i + 1]: argv[i + 2] for i, a in enumerate(argv) if a == "--setenv"}
    assert set(env) == {"PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "GOCACHE"}


def test_network_is_shared_only_when_asked() -> None:
    assert "--unshare-net" not in build_argv("bwrap", spec(network=True))


def test_seccomp_rules_cover_the_policy() -> None:
    denied = {r.syscall: r.errno for r in rules() if r.arg is None}
    for name in (
        "mount",
        "unshare",
        "setns",
        "ptrace",
        "process_vm_readv",
        "process_vm_writev",
        "keyctl",
        "bpf",
        "perf_event_open",
        "userfaultfd",
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
        "kexec_load",
        "kexec_file_load",
        "init_module",
        "finit_module",
        "delete_module",
        "clock_settime",
        "settimeofday",
        "adjtimex",
        "clock_adjtime",
    ):
        assert denied[name] == errno.EPERM, name
    assert denied["clone3"] == errno.ENOSYS
    ioctl = {r.arg for r in rules() if r.syscall == "ioctl"}
    assert ioctl == {(1, 0xFFFFFFFF, TIOCSTI), (1, 0xFFFFFFFF, TIOCLINUX)}
    clone_bits = sum(r.arg[1] for r in rules() if r.syscall == "clone" and r.arg)
    assert clone_bits == CLONE_NEW_FLAGS


def test_seccomp_compiles_to_bpf() -> None:
    program = compile_bpf()
    assert len(program) % 8 == 0 and len(program) > 8 * 40


@pytest.mark.parametrize(
    ("evidence", "state", "limit"),
    [
        (Evidence(0), State.SUCCEEDED, None),
        (Evidence(3), State.FAILED, None),
        (Evidence(139), State.FAILED, None),
        (Evidence(1, setup_error="bwrap: boom"), State.ERROR, None),
        (Evidence(-9, kill_reason=KillReason.CANCELLED, oom_kills=1), State.CANCELLED, None),
        (Evidence(-9, kill_reason=KillReason.OUTPUT), State.LIMIT_EXCEEDED, Limit.OUTPUT),
        (Evidence(137, oom_kills=1), State.LIMIT_EXCEEDED, Limit.MEMORY),
        (Evidence(1, disk_full=True), State.LIMIT_EXCEEDED, Limit.DISK),
        (Evidence(128 + signal.SIGXFSZ), State.FAILED, None),
        (Evidence(153, wait_status=signal.SIGXFSZ, disk_full=True), State.LIMIT_EXCEEDED, Limit.DISK),
        (Evidence(-9, kill_reason=KillReason.WALL_TIME, pids_max_hits=5), State.LIMIT_EXCEEDED, Limit.PROCESSES),
        (Evidence(-9, kill_reason=KillReason.CPU_TIME), State.LIMIT_EXCEEDED, Limit.CPU_TIME),
        (Evidence(128 + signal.SIGXCPU), State.FAILED, None),
        (Evidence(152, wait_status=signal.SIGXCPU), State.FAILED, None),
        (
            Evidence(152, wait_status=signal.SIGXCPU, cpu_time_ns=2, cpu_limit_ns=1),
            State.LIMIT_EXCEEDED,
            Limit.CPU_TIME,
        ),
        (Evidence(137, cpu_time_ns=2, cpu_limit_ns=1), State.FAILED, None),
        (Evidence(137, wait_status=9, cpu_time_ns=2, cpu_limit_ns=1), State.LIMIT_EXCEEDED, Limit.CPU_TIME),
        (Evidence(-9, kill_reason=KillReason.WALL_TIME), State.LIMIT_EXCEEDED, Limit.WALL_TIME),
        (Evidence(0, pids_max_hits=3, disk_full=True), State.SUCCEEDED, None),
    ],
)
def test_classification(evidence: Evidence, state: State, limit: Limit | None) -> None:
    verdict = classify(evidence)
    assert (verdict.state, verdict.limit) == (state, limit)


@given(st.integers(min_value=-64, max_value=255))
def test_decode_status_is_total(rc: int) -> None:
    code, sig = decode_status(rc)
    assert (code is None) != (sig is None)
    assert classify(Evidence(rc)).state in (State.SUCCEEDED, State.FAILED, State.LIMIT_EXCEEDED)


@given(
    st.lists(st.tuples(st.sampled_from(["stdout", "stderr"]), st.binary(max_size=300)), max_size=30),
    st.integers(min_value=0, max_value=1000),
)
def test_capture_never_exceeds_the_byte_cap(chunks: list[tuple[str, bytes]], cap: int) -> None:
    c = Capture(cap)
    for stream, data in chunks:
        c.add(stream, data)  # type: ignore[arg-type]
    total = sum(len(d) for _, d in chunks)
    assert c.kept_bytes == min(cap, total)
    assert c.overflowed == (total > cap)
    out = b"".join(d for s, d in chunks if s == "stdout")
    assert bytes(c.data["stdout"]) == out[: len(c.data["stdout"])]


def test_parse_flat_keyed() -> None:
    assert parse_flat_keyed("oom 0\noom_kill 2\nbad line here\nmax x\n") == {"oom": 0, "oom_kill": 2}


MOUNTINFO = """\
30 25 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
31 25 0:27 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
32 25 0:28 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
33 25 0:29 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
"""


def test_discover_hybrid_layout() -> None:
    layout = discover(MOUNTINFO, "4:memory:/svc\n8:pids:/\n1:cpu:/\n0::/\n", exists={})
    assert layout.version_for("memory") == "v1" and layout.v1_dirs["memory"] == "/sys/fs/cgroup/memory/svc"
    assert layout.v2_dir == "/sys/fs/cgroup/unified" and layout.version_for("pids") == "v1"
    assert layout.only_v1().v2_dir is None


def test_v2_limits_and_stats_on_a_fake_tree(tmp_path: Path) -> None:
    """The v2 limit path, written against a directory tree (no controllers are on v2 on this host)."""
    root = str(tmp_path)
    layout = CgroupLayout(v2_dir=root, v2_controllers=frozenset({"memory", "pids", "cpu"}), v2_kill=True)
    cg = RunCgroup(layout, "prefix", "run1")
    assert set(cg.dirs) == {"v2"}
    os.makedirs(f"{root}/prefix")
    for ctl in (root, f"{root}/prefix"):
        open(f"{ctl}/cgroup.subtree_control", "w").close()
    cg.create()
    d = cg.dirs["v2"]
    for name in ("memory.max", "memory.swap.max", "memory.oom.group", "pids.max", "cpu.max"):
        open(f"{d}/{name}", "w").close()
    cg.set_limits(64 << 20, 34, 1.0)
    got = {n: Path(d, n).read_text() for n in ("memory.max", "memory.swap.max", "pids.max", "cpu.max")}
    assert got == {"memory.max": str(64 << 20), "memory.swap.max": "0", "pids.max": "34", "cpu.max": "100000 100000"}
    assert Path(root, "prefix", "cgroup.subtree_control").read_text() == "+memory +pids +cpu"
    with open(f"{d}/memory.events", "w") as f:
        f.write("low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\n")
    with open(f"{d}/pids.events", "w") as f:
        f.write("max 4\n")
    with open(f"{d}/cpu.stat", "w") as f:
        f.write("usage_usec 1500\nuser_usec 1000\n")
    with open(f"{d}/memory.peak", "w") as f:
        f.write("1048576\n")
    stats = cg.stats()
    assert (stats.cpu_usage_ns, stats.memory_peak_bytes, stats.oom_kills, stats.pids_max_hits) == (
        1_500_000,
        1 << 20,
        1,
        4,
    )
    assert cg.procs_files() == [f"{d}/cgroup.procs"]


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/../../b", "", ".", "a//b", "a\\b", "x\0y", "./a"])
def test_bad_file_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidRequest):
        check_relative_name(name)


def test_good_file_names() -> None:
    assert check_relative_name("data/in.txt") == "data/in.txt"


def test_language_registry_is_data() -> None:
    py = get("python")
    assert py is LANGUAGES["python"] and not py.compiled and py.compile_argv() is None
    assert py.run_argv(["a"]) == ["/usr/bin/python3.11", "-I", "-S", "main.py", "a"]
    assert py.parse_version(b"Python 3.11.2\n") == "3.11.2"
    assert all(not p.startswith(("/root", "/home", "/etc", "/work")) for p in py.toolchain_paths)


def test_doctor_render_refuses_when_required_missing() -> None:
    report = DoctorReport(
        (Feature("seccomp", False, "no libseccomp"), Feature("bubblewrap", True, "0.8.0")),
        frozenset({"seccomp", "bubblewrap"}),
    )
    text = render(report)
    assert "MISSING" in text and "REFUSING to run code" in text and "seccomp" in text
    assert report.missing_required() == ["seccomp"] and not report.ok


def test_favordynmods_remount_keeps_the_hierarchys_own_options() -> None:
    mountinfo = (
        "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n"
        "42 31 0:39 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
        "43 31 0:40 / /other rw - cgroup2 cgroup2 rw,favordynmods\n"
        "not a mountinfo line\n"
    )
    assert favordynmods_remounts(mountinfo) == [
        Remount(
            "/sys/fs/cgroup/unified",
            "nsdelegate,memory_recursiveprot",
            "nsdelegate,memory_recursiveprot,favordynmods",
        )
    ]
    # What a restore gives back: the options as they were, rw/ro left out (a remount keeps those).
    assert cgroup2_options(mountinfo) == [
        ("/sys/fs/cgroup/unified", "nsdelegate,memory_recursiveprot"),
        ("/other", "favordynmods"),
    ]
    assert favordynmods_remounts("41 31 0:38 / /u rw - cgroup2 cgroup2 rw\n") == [Remount("/u", "", "favordynmods")]


def test_socket_is_allowed_for_unix_ip_and_route_netlink_only() -> None:
    from runtime.seccomp_policy import AF_NETLINK, ALLOWED_SOCKET_FAMILIES

    socket_rules = [r for r in rules() if r.syscall == "socket"]
    denied_families = {r.arg[2] for r in socket_rules if r.arg and r.arg[1] == 0xFFFFFFFF and not r.also}
    assert denied_families == set(range(64)) - ALLOWED_SOCKET_FAMILIES
    assert {40, 17, 31, 38} <= denied_families  # vsock, packet, bluetooth, alg
    high = {r.arg[1] for r in socket_rules if r.arg and r.arg[1] == r.arg[2] and not r.also}
    assert high == {1 << i for i in range(6, 32)}
    netlink = {r.also[0][2] for r in socket_rules if r.also and r.also[0][1] == 0xFFFFFFFF}
    assert all(r.arg == (0, 0xFFFFFFFF, AF_NETLINK) for r in socket_rules if r.also)
    assert netlink == set(range(1, 32))
    assert {r.errno for r in socket_rules if not r.also} == {errno.EAFNOSUPPORT}
