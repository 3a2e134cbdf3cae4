"""The hostile-program suite: each case runs in a real sandbox and asserts its contained outcome."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import textwrap
import time

import pytest

from runtime.local import LocalBackend
from streams.states import Limit, State
from tests.runtime.conftest import SMALL, Heartbeat, Runner, make_config, sandbox_uid_processes

pytestmark = pytest.mark.sandbox


def src(code: str) -> str:
    return textwrap.dedent(code).lstrip()


def rejected_field(**fields: object) -> str | None:
    """The field validation (processors/rules.py, the gateway's and the pipeline's) names in its
    rejection of a python submission with `fields`; None if it accepts it."""
    from processors.policy import DEFAULT_POLICY
    from processors.rules import Rejection, validate
    from streams.records import ExecutionRequest

    request = ExecutionRequest(id="hostile-1", language="python", code="print(1)", **fields)  # type: ignore[arg-type]
    verdict = validate(request, DEFAULT_POLICY, {"python"})
    return verdict.field if isinstance(verdict, Rejection) else None


# -- resource exhaustion ---------------------------------------------------------------------------

FORK_BOMB = src("""
    import os
    while True:
        try:
            os.fork()
        except OSError:
            pass
""")

MEMORY_BOMB = src("""
    chunks = []
    while True:
        b = bytearray(1 << 20)
        for i in range(0, len(b), 4096):
            b[i] = 1          # touch every page
        chunks.append(b)
""")


async def assert_the_loop_kept_ticking(heartbeat: Heartbeat, elapsed_s: float) -> None:
    """The supervisor's event loop went on while the bomb ran: against a heartbeat over a plain
    `asyncio.sleep` of the same length right after, in the same process under the same load, at
    least a third of its ticks and no stall longer than half a second or three times its own."""
    baseline = Heartbeat(interval_s=heartbeat.interval_s)
    beat = asyncio.ensure_future(baseline.beat())
    await asyncio.sleep(elapsed_s)
    baseline.stop()
    await beat
    assert len(heartbeat.ticks) >= len(baseline.ticks) / 3, (len(heartbeat.ticks), len(baseline.ticks))
    assert heartbeat.max_gap_s < max(0.5, 3 * baseline.max_gap_s), (heartbeat.max_gap_s, baseline.max_gap_s)


async def test_fork_bomb_is_contained_and_heartbeat_keeps_ticking(run: Runner, heartbeat: Heartbeat) -> None:
    beat = asyncio.ensure_future(heartbeat.beat())
    t0 = time.monotonic()
    outcome = await run(FORK_BOMB)
    elapsed = time.monotonic() - t0
    heartbeat.stop()
    await beat
    assert outcome.state is State.LIMIT_EXCEEDED and outcome.limit is Limit.PROCESSES
    await assert_the_loop_kept_ticking(heartbeat, elapsed)
    after = await run("print('still fine')")
    assert after.state is State.SUCCEEDED and after.stdout == b"still fine\n"


async def test_memory_bomb_touching_pages_and_heartbeat(run: Runner, heartbeat: Heartbeat) -> None:
    beat = asyncio.ensure_future(heartbeat.beat())
    t0 = time.monotonic()
    outcome = await run(MEMORY_BOMB)
    elapsed = time.monotonic() - t0
    heartbeat.stop()
    await beat
    assert outcome.state is State.LIMIT_EXCEEDED and outcome.limit is Limit.MEMORY
    assert outcome.signal == signal.SIGKILL
    assert outcome.memory_peak_kib >= 60 * 1024
    assert len(heartbeat.ticks) >= 3
    await assert_the_loop_kept_ticking(heartbeat, elapsed)
    after = await run("print(sum(range(10)))")
    assert after.state is State.SUCCEEDED and after.stdout == b"45\n"


async def test_thread_bomb(run: Runner) -> None:
    code = src("""
        import threading, time
        while True:
            threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
    """)
    outcome = await run(code)
    assert outcome.state is State.LIMIT_EXCEEDED and outcome.limit is Limit.PROCESSES
    assert b"can't start new thread" in outcome.stderr


async def test_cpu_spin_one_thread(run: Runner) -> None:
    # The wall limit is far off, so that only the CPU limit can end it even on a loaded machine; how
    # soon after the limit the kill lands is measured in bench/limits.py.
    outcome = await run("while True: pass", cpu_time_ms=500, wall_time_ms=20_000)
    assert outcome.state is State.LIMIT_EXCEEDED and outcome.limit is Limit.CPU_TIME
    assert outcome.cpu_time_ms >= 500  # it ran to its limit
    assert outcome.run_ms < 20_000  # and was stopped there, not by the wall limit
    # The cgroup's CPU bandwidth (1 core) holds too: never more CPU than wall time, plus one 100 ms period.
    assert outcome.cpu_time_ms <= outcome.run_ms + 100


async def test_cpu_spin_many_threads_in_many_processes(run: Runner) -> None:
    code = src("""
        import os, threading
        for _ in range(3):
            os.fork()
        def spin():
            while True: pass
        for _ in range(3):
            threading.Thread(target=spin).start()
        spin()
    """)
    outcome = await run(code, cpu_time_ms=600, wall_time_ms=20_000)
    assert outcome.state is State.LIMIT_EXCEEDED and outcome.limit is Limit.CPU_TIME
    assert outcome.cpu_time_ms >= 600
    # 32 spinning threads share the run's one core of CPU bandwidth: never more CPU than wall time (+ a period).
    assert outcome.cpu_time_ms <= outcome.run_ms + 100


async def test_sleep_past_wall_limit(run: Runner) -> None:
    outcome = await run("import time; time.sleep(120)", wall_time_ms=700)
    assert outcome.state is State.LIMIT_EXCEEDED and outcome.limit is Limit.WALL_TIME
    # Killed at its limit, long before its own sleep would end (the kill's latency: bench/limits.py).
    assert 700 <= outcome.run_ms < 60_000
    assert outcome.cpu_time_ms < 500  # asleep: the wall limit, not the CPU limit (1000 ms), ended it


async def test_blocking_on_stdin_gets_eof_not_a_hang(run: Runner) -> None:
    code = "import sys\ndata = sys.stdin.buffer.read()\nprint(len(data))\ninput()"
    outcome = await run(code, wall_time_ms=30_000)
    # Ended by itself at EOF (FAILED, no limit), not by the wall limit a hang would run into.
    assert outcome.state is State.FAILED and outcome.exit_code == 1 and outcome.limit is None
    assert outcome.stdout == b"0\n" and b"EOFError" in outcome.stderr


# -- surviving the run ----------------------------------------------------------------------------


async def test_double_forked_orphan_does_not_outlive_the_run(run: Runner) -> None:
    code = src("""
        import os, time
        if os.fork() == 0:
            if os.fork() == 0:
                time.sleep(600)
            os._exit(0)
        os.wait()
        print("parent done", flush=True)
    """)
    # The run ends with its main process (SUCCEEDED, no limit): it does not wait for the orphan,
    # which would take it to the wall limit.
    outcome = await run(code, wall_time_ms=30_000)
    assert outcome.state is State.SUCCEEDED and outcome.stdout == b"parent done\n" and outcome.limit is None
    assert sandbox_uid_processes() == []


async def test_setsid_daemon_does_not_outlive_the_run(run: Runner) -> None:
    code = src("""
        import os, signal, time
        if os.fork() == 0:
            os.setsid()
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            if os.fork() == 0:
                time.sleep(30)
            os._exit(0)
        print("bye")
    """)
    outcome = await run(code)
    assert outcome.state is State.SUCCEEDED
    assert sandbox_uid_processes() == []


async def test_zombie_pile(run: Runner) -> None:
    code = src("""
        import os
        made = 0
        for _ in range(200):
            try:
                if os.fork() == 0:
                    os._exit(0)
                made += 1
            except OSError:
                break
        print(made)
    """)
    outcome = await run(code)
    # The unreaped zombies still count as pids: the limit stops the pile.
    assert outcome.state is State.SUCCEEDED
    assert 0 < int(outcome.stdout) <= SMALL.processes
    assert sandbox_uid_processes() == []


async def test_moving_itself_out_of_the_cgroup_fails(run: Runner) -> None:
    code = src("""
        import os, ctypes
        import functools
        print = functools.partial(print, flush=True)
        print(open("/proc/self/cgroup").read().strip().splitlines()[-1])
        for path in ("/sys/fs/cgroup/cgroup.procs", "/sys/fs/cgroup/memory/cgroup.procs"):
            try:
                open(path, "w").write(str(os.getpid()))
                print("moved!")
            except OSError as e:
                print("blocked", e.errno)
        libc = ctypes.CDLL(None, use_errno=True)
        os.makedirs("/tmp/cg", exist_ok=True)
        rc = libc.mount(b"none", b"/tmp/cg", b"cgroup2", 0, None)
        print("mount", rc, ctypes.get_errno())
        x = []
        while True:
            x.append(bytearray(1 << 20))
            for i in range(0, 1 << 20, 4096): x[-1][i] = 1
    """)
    outcome = await run(code)
    assert b"moved!" not in outcome.stdout
    assert outcome.stdout.count(b"blocked") == 2
    assert b"mount -1 1\n" in outcome.stdout  # EPERM from seccomp
    assert outcome.state is State.LIMIT_EXCEEDED and outcome.limit is Limit.MEMORY


# -- output and disk --------------------------------------------------------------------------------


async def test_yes_to_stdout(run: Runner) -> None:
    outcome = await run("import sys\nwhile True: sys.stdout.write('y\\n' * 4096)", wall_time_ms=5000)
    assert outcome.state is State.LIMIT_EXCEEDED and outcome.limit is Limit.OUTPUT
    assert outcome.truncated_stdout and not outcome.truncated_stderr
    assert len(outcome.stdout) == SMALL.output_bytes and set(outcome.stdout) == set(b"y\n")
    assert len(run.chunks) >= 1 and b"".join(c.data for c in run.chunks if c.stream == "stdout") == outcome.stdout


async def test_yes_to_stderr(run: Runner) -> None:
    outcome = await run("import os\nwhile True: os.write(2, b'n\\n' * 4096)", wall_time_ms=5000)
    assert outcome.state is State.LIMIT_EXCEEDED and outcome.limit is Limit.OUTPUT
    assert outcome.truncated_stderr and len(outcome.stderr) == SMALL.output_bytes
    assert outcome.stdout == b""


async def test_output_cap_is_in_bytes_and_invalid_utf8_is_safe(run: Runner) -> None:
    code = "import os\nos.write(1, b'\\xff\\xfe\\xc3(' * 10)\nos.write(1, '\\u00e9'.encode() * 40000)"
    outcome = await run(code, output_bytes=1000)
    assert outcome.state is State.LIMIT_EXCEEDED and outcome.limit is Limit.OUTPUT
    assert len(outcome.stdout) == 1000  # bytes, even if that splits a UTF-8 character
    assert outcome.stdout.startswith(b"\xff\xfe\xc3(" * 10)


async def test_ten_gigabytes_to_tmp(run: Runner) -> None:
    code = src("""
        with open("/tmp/big", "wb") as f:
            block = b"\\0" * (1 << 20)
            for _ in range(10 * 1024):
                f.write(block)
    """)
    outcome = await run(code)
    assert outcome.state is State.LIMIT_EXCEEDED and outcome.limit is Limit.DISK
    assert b"File too large" in outcome.stderr or b"No space left" in outcome.stderr


async def test_a_million_tiny_files(run: Runner) -> None:
    code = src("""
        import os
        for i in range(1_000_000):
            with open(f"/box/f{i}", "w") as f:
                f.write("x")
    """)
    outcome = await run(code, wall_time_ms=5000)
    assert outcome.state is State.LIMIT_EXCEEDED and outcome.limit is Limit.DISK
    assert b"No space left on device" in outcome.stderr


async def test_filling_dev_shm_counts_as_disk(run: Runner) -> None:
    code = "f = open('/dev/shm/x', 'wb')\nwhile True: f.write(b'z' * (1 << 20))"
    outcome = await run(code)
    assert outcome.state is State.LIMIT_EXCEEDED and outcome.limit is Limit.DISK


async def test_writing_to_usr_etc_and_root_fails(run: Runner) -> None:
    code = src("""
        import errno
        for path in ("/usr/evil", "/usr/lib/python3.11/os.py", "/etc/evil", "/evil", "/proc/evil"):
            try:
                open(path, "a").write("x")
                print(path, "WRITTEN")
            except OSError as e:
                print(path, errno.errorcode[e.errno])
    """)
    outcome = await run(code)
    assert outcome.state is State.SUCCEEDED
    assert b"WRITTEN" not in outcome.stdout
    assert outcome.stdout.count(b"EROFS") + outcome.stdout.count(b"EACCES") + outcome.stdout.count(b"ENOENT") == 5
    assert not os.path.exists("/usr/evil") and not os.path.exists("/etc/evil") and not os.path.exists("/evil")


# -- leaks between runs ------------------------------------------------------------------------------


async def test_no_files_leak_to_the_next_run(run: Runner) -> None:
    first = await run("for p in ('/tmp/leak', '/dev/shm/leak', '/box/leak'): open(p, 'w').write('secret')")
    assert first.state is State.SUCCEEDED
    second = await run(
        "import os\nprint(sorted(os.listdir('/tmp')), sorted(os.listdir('/dev/shm')), sorted(os.listdir('/box')))"
    )
    assert second.state is State.SUCCEEDED
    assert second.stdout == b"[] [] ['main.py']\n"


# -- secrets -------------------------------------------------------------------------------------------


async def test_host_secrets_are_not_visible(run: Runner) -> None:
    code = src("""
        import os
        for p in ("/etc/shadow", "/etc/passwd", "/root", "/home", "/work", "/work/main/pyproject.toml",
                  "/var/lib", "/run", "/sys", "/tmp/aevatar-sandbox-tests"):
            print(p, os.path.exists(p))
        print(sorted(os.listdir("/")))
    """)
    outcome = await run(code)
    assert outcome.state is State.SUCCEEDED
    assert b"True" not in outcome.stdout
    # .aevatar-init: the sandbox's pid 1 (runtime/sandbox_exec.c, --init), bound read-only.
    listing = b"['.aevatar-init', 'bin', 'box', 'dev', 'lib', 'lib64', 'proc', 'sbin', 'tmp', 'usr']"
    assert outcome.stdout.splitlines()[-1] == listing


async def test_environment_is_an_allowlist_and_proc_1_environ_is_clean(
    run: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AEVATAR_TEST_SECRET", "hunter2-canary")
    code = src("""
        import os
        print(sorted(os.environ))
        for p in ("/proc/self/environ", "/proc/1/environ"):
            try:
                print(p, open(p, "rb").read())
            except OSError as e:
                print(p, "error", e.errno)
    """)
    outcome = await run(code)
    assert outcome.state is State.SUCCEEDED
    assert outcome.stdout.splitlines()[0] == b"['HOME', 'LANG', 'LC_ALL', 'PATH', 'PWD', 'TMPDIR']"
    assert b"hunter2-canary" not in outcome.stdout
    assert b"AEVATAR" not in outcome.stdout


async def test_listing_proc_shows_only_the_sandbox(run: Runner) -> None:
    code = src("""
        import os
        pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
        print(pids)
        print(open("/proc/1/comm").read().strip())
        print(os.path.exists("/proc/HOSTPID"))
    """).replace("HOSTPID", str(os.getpid()))
    outcome = await run(code)
    assert outcome.state is State.SUCCEEDED
    lines = outcome.stdout.splitlines()
    assert lines[0] == b"[1, 2]"  # the sandbox's init (ours, reporting the exit status) and the program
    assert lines[1] == b".aevatar-init"
    assert os.getpid() > 2 and lines[2] == b"False"


# -- network -------------------------------------------------------------------------------------------


SOCKETS = src("""
    import ctypes, errno, json
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    SYS_SOCKET = 41  # x86_64
    def try_socket(family, kind, protocol):
        # The raw system call with 64-bit arguments: high garbage must not slip past the filter.
        args = [ctypes.c_long(a) for a in (SYS_SOCKET, family, kind, protocol)]
        fd = libc.syscall(*args)
        if fd >= 0:
            libc.close(fd)
            return "ok"
        return errno.errorcode[ctypes.get_errno()]
    cases = {
        "unix": (1, 1, 0), "inet": (2, 1, 0), "inet6": (10, 2, 0), "netlink_route": (16, 3, 0),
        "vsock": (40, 1, 0), "vsock_dgram": (40, 2, 0), "vsock_high_bits": ((1 << 32) | 40, 1, 0),
        "packet": (17, 3, 0), "bluetooth": (31, 1, 0), "alg": (38, 5, 0), "key": (15, 3, 2),
        "rds": (21, 5, 0), "tipc": (30, 2, 0), "xdp": (44, 3, 0), "unknown_63": (63, 1, 0), "huge": (1 << 20, 1, 0),
        "netlink_audit": (16, 3, 9), "netlink_uevent": (16, 3, 15), "netlink_high_bits": (16, 3, 1 << 40 | 9),
    }
    print(json.dumps({name: try_socket(*args) for name, args in cases.items()}))
""")


async def test_socket_families_beyond_unix_ip_and_route_netlink_are_refused(run: Runner) -> None:
    """The seccomp filter (runtime/seccomp_policy.py): AF_VSOCK reaches the hypervisor, AF_PACKET,
    AF_BLUETOOTH and AF_ALG are kernel surface a program has no business with."""
    import json

    outcome = await run(SOCKETS)
    assert outcome.state is State.SUCCEEDED, outcome.stderr
    got = json.loads(outcome.stdout)
    for allowed in ("unix", "inet", "inet6", "netlink_route"):
        assert got.pop(allowed) == "ok", allowed
    assert got.pop("netlink_audit") == got.pop("netlink_uevent") == got.pop("netlink_high_bits") == "EPROTONOSUPPORT"
    assert got == dict.fromkeys(got, "EAFNOSUPPORT")


CONNECT = src("""
    import socket, sys, errno
    for host, port in [tuple(a.split(":")) for a in sys.argv[1:]]:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(1)
        try:
            s.connect((host, int(port)))
            print(host, "CONNECTED")
        except OSError as e:
            print(host, errno.errorcode.get(e.errno, e))
""")


async def test_loopback_service_on_the_host_is_unreachable(run: Runner) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    try:
        # Prove the listener is real: the host can connect to it.
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            pass
        conn, _ = listener.accept()
        conn.close()
        outcome = await run(CONNECT, args=(f"127.0.0.1:{port}", f"127.0.0.2:{port}"))
        assert outcome.state is State.SUCCEEDED
        assert b"CONNECTED" not in outcome.stdout
        assert outcome.stdout == b"127.0.0.1 ECONNREFUSED\n127.0.0.2 ECONNREFUSED\n"
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody reached it from the sandbox
    finally:
        listener.close()


async def test_external_address_is_unreachable(run: Runner) -> None:
    outcome = await run(CONNECT, args=("1.1.1.1:443", "10.0.0.1:80"))
    assert outcome.state is State.SUCCEEDED
    assert outcome.stdout == b"1.1.1.1 ENETUNREACH\n10.0.0.1 ENETUNREACH\n"


async def test_request_for_network_is_refused_by_policy(run: Runner) -> None:
    outcome = await run("print(1)", network=True)
    assert outcome.state is State.ERROR and outcome.error is not None and "network" in outcome.error
    # Submitted, it never reaches a backend: validation refuses it, naming the field.
    assert rejected_field(network=True) == "network"


# -- planted files ------------------------------------------------------------------------------------


async def test_planted_symlink_fifo_and_hardlink_are_never_followed(run: Runner, tmp_path: object) -> None:
    canary_dir = f"/tmp/aevatar-canary-{os.getpid()}"
    os.makedirs(canary_dir, exist_ok=True)
    canary = os.path.join(canary_dir, "keep.txt")
    with open(canary, "w") as f:
        f.write("precious")
    code = src(f"""
        import os
        for d in ("/tmp", "/box", "/dev/shm"):
            os.symlink("{canary_dir}", d + "/link-to-host")
            os.symlink("/etc/shadow", d + "/shadow")
            os.mkfifo(d + "/fifo")
            open(d + "/a", "w").write("x")
            os.link(d + "/a", d + "/hard")
        for target in ("/box/main.py",):
            for attempt in (lambda: os.unlink(target), lambda: open(target, "w"),
                            lambda: os.rename("/box/fifo", target)):
                try:
                    attempt()
                    print("REPLACED", target)
                except OSError as e:
                    print("kept", e.errno)
        print("planted")
    """)
    async with asyncio.timeout(120):  # a hang on the FIFO (in the backend, not the program) fails here
        outcome = await run(code)
    assert outcome.state is State.SUCCEEDED, outcome.stderr
    assert b"REPLACED" not in outcome.stdout and outcome.stdout.endswith(b"planted\n")
    with open(canary) as f:
        assert f.read() == "precious"
    assert os.listdir(canary_dir) == ["keep.txt"]
    os.unlink(canary)
    os.rmdir(canary_dir)


# -- privilege --------------------------------------------------------------------------------------


PRIV = src("""
    import ctypes, errno, os
    libc = ctypes.CDLL(None, use_errno=True)
    def show(name, rc):
        print(name, rc, errno.errorcode.get(ctypes.get_errno(), "0") if rc == -1 else "ok")
    show("ptrace_traceme", libc.ptrace(0, 0, None, None))
    show("ptrace_attach_1", libc.ptrace(16, 1, None, None))
    show("mount", libc.mount(b"none", b"/tmp", b"tmpfs", 0, None))
    show("umount", libc.umount2(b"/proc", 2))
    show("unshare_user", libc.unshare(0x10000000))
    show("unshare_net", libc.unshare(0x40000000))
    show("setns", libc.setns(0, 0))
    show("clone_newuser", libc.syscall(56, 0x10000000 | 17, None, None, None, None))
    show("clone3", libc.syscall(435, None, 0))
    show("keyctl", libc.syscall(250, 0, 0, 0, 0, 0))
    show("bpf", libc.syscall(321, 0, None, 0))
    show("perf_event_open", libc.syscall(298, None, 0, -1, -1, 0))
    show("userfaultfd", libc.syscall(323, 0))
    show("io_uring_setup", libc.syscall(425, 1, None))
    show("init_module", libc.syscall(175, None, 0, b""))
    show("kexec_load", libc.syscall(246, 0, 0, None, 0))
    show("process_vm_readv", libc.syscall(310, 1, None, 0, None, 0, 0))
    show("settimeofday", libc.syscall(164, None, None))
    show("clock_settime", libc.syscall(227, 0, None))
    show("setuid0", libc.setuid(0))
""")


async def test_privileged_syscalls_are_denied(run: Runner) -> None:
    outcome = await run(PRIV)
    assert outcome.state is State.SUCCEEDED, outcome.stderr
    got = dict(line.split(b" ", 1) for line in outcome.stdout.splitlines())
    expected_eperm = [
        b"ptrace_traceme", b"ptrace_attach_1", b"mount", b"umount", b"unshare_user", b"unshare_net", b"setns",
        b"clone_newuser", b"keyctl", b"bpf", b"perf_event_open", b"userfaultfd", b"io_uring_setup",
        b"init_module", b"kexec_load", b"process_vm_readv", b"settimeofday", b"clock_settime",
    ]  # fmt: skip
    for name in expected_eperm:
        assert got[name] == b"-1 EPERM", (name, got[name])
    assert got[b"setuid0"] == b"-1 EINVAL"  # uid 0 is not even mapped in the sandbox's user namespace
    assert got[b"clone3"] == b"-1 ENOSYS"


async def test_setting_the_clock_fails(run: Runner) -> None:
    outcome = await run("import time\ntime.clock_settime(time.CLOCK_REALTIME, 0)")
    assert outcome.state is State.FAILED and b"PermissionError" in outcome.stderr
    assert abs(time.time() - time.time()) < 1 and time.time() > 1_600_000_000


async def test_setuid_binary_gives_no_privilege(run: Runner) -> None:
    code = src("""
        import os, shutil, stat, subprocess
        print([p for p in ("/usr/bin/su", "/usr/bin/sudo", "/usr/bin/passwd", "/bin/mount") if os.path.exists(p)])
        shutil.copy("/usr/bin/python3.11", "/tmp/suid-python")
        os.chmod("/tmp/suid-python", 0o4755)
        print(bool(os.stat("/tmp/suid-python").st_mode & stat.S_ISUID))
        out = subprocess.run(["/tmp/suid-python", "-I", "-S", "-c", "import os; print(os.geteuid())"],
                             capture_output=True, text=True)
        print(out.stdout.strip(), os.geteuid())
    """)
    outcome = await run(code, disk_mib=16)
    assert outcome.state is State.SUCCEEDED, outcome.stderr
    assert outcome.stdout == b"[]\nTrue\n1000 1000\n"


async def test_tiocsti_and_tioclinux_are_denied(run: Runner) -> None:
    code = src("""
        import fcntl, errno, os
        for name, req in (("TIOCSTI", 0x5412), ("TIOCLINUX", 0x541C), ("TIOCSTI_high_bits", 0x5412 | (1 << 32))):
            for fd in (0, 1):
                try:
                    fcntl.ioctl(fd, req, b"x")
                    print(name, "ok")
                except OverflowError:
                    print(name, "overflow")
                except OSError as e:
                    print(name, errno.errorcode[e.errno])
        try:
            os.open("/dev/tty", os.O_RDWR)
            print("tty opened")
        except OSError as e:
            print("tty", errno.errorcode[e.errno])
    """)
    outcome = await run(code)
    assert outcome.state is State.SUCCEEDED, outcome.stderr
    lines = outcome.stdout.splitlines()
    # Without the filter a pipe answers ENOTTY; EPERM proves seccomp caught the request.
    assert lines[:6] == [
        b"TIOCSTI EPERM",
        b"TIOCSTI EPERM",
        b"TIOCLINUX EPERM",
        b"TIOCLINUX EPERM",
        b"TIOCSTI_high_bits EPERM",
        b"TIOCSTI_high_bits EPERM",
    ]
    assert b"tty opened" not in outcome.stdout


async def test_kill_minus_one_touches_nothing_outside() -> None:
    # A backend with a single slot, so the host uid is known: a host sentinel runs as that very uid.
    uid = 62500
    cfg = make_config(uid_base=uid, max_slots=1)
    backend = LocalBackend(cfg)
    sentinel = subprocess.Popen(["/usr/bin/sleep", "30"], user=uid, group=uid, extra_groups=[])
    try:
        outcome = await Runner(backend)(
            src("""
                import os, signal
                try:
                    os.kill(-1, signal.SIGKILL)
                    print("sent")
                except ProcessLookupError:
                    print("nobody to kill")
                os.kill(1, signal.SIGKILL)  # the sandbox's init ignores it
                print("survived")
            """)
        )
        assert outcome.state is State.SUCCEEDED and outcome.stdout == b"nobody to kill\nsurvived\n"
        time.sleep(0.05)
        assert sentinel.poll() is None, "the host process sharing the uid was killed"
    finally:
        sentinel.kill()
        sentinel.wait()
        await backend.close()


# -- posture and inputs ----------------------------------------------------------------------------


async def test_proc_self_status_posture(run: Runner) -> None:
    code = "print(''.join(l for l in open('/proc/self/status') if l.split(':')[0] in "
    code += "('CapEff', 'CapPrm', 'CapBnd', 'CapAmb', 'NoNewPrivs', 'Seccomp', 'Uid')))"
    outcome = await run(code)
    assert outcome.state is State.SUCCEEDED
    status = dict(
        (k.strip(), v.split()) for k, v in (line.split(b":", 1) for line in outcome.stdout.strip().splitlines())
    )
    for cap in (b"CapEff", b"CapPrm", b"CapBnd", b"CapAmb"):
        assert int(status[cap][0], 16) == 0, cap
    assert status[b"NoNewPrivs"] == [b"1"]
    assert status[b"Seccomp"] == [b"2"]
    assert status[b"Uid"] == [b"1000"] * 4


async def test_huge_argv(run: Runner) -> None:
    args = tuple("a" * 1000 for _ in range(100))
    outcome = await run("import sys\nprint(len(sys.argv) - 1, sum(map(len, sys.argv[1:])))", args=args)
    assert outcome.state is State.SUCCEEDED and outcome.stdout == b"100 100000\n"
    too_big = await run("print('never')", args=("b" * 300_000,))
    assert too_big.state is State.ERROR and too_big.error is not None and "argument" in too_big.error
    # Submitted, it never reaches a backend: validation refuses it, naming the argument.
    assert rejected_field(args=["b" * 300_000]) == "args[0]"


async def test_huge_stdin_and_env(run: Runner) -> None:
    stdin = os.urandom(1024) * 32 * 1024  # 32 MiB
    ignored = await run("print('did not read')", stdin=stdin)
    assert ignored.state is State.SUCCEEDED and ignored.stdout == b"did not read\n"
    counted = await run(
        "import sys, hashlib\nprint(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())",
        stdin=stdin,
        wall_time_ms=5000,
        cpu_time_ms=3000,
    )
    import hashlib

    assert counted.state is State.SUCCEEDED and counted.stdout.strip() == hashlib.sha256(stdin).hexdigest().encode()
    env_bomb = await run(
        src("""
        import os, subprocess
        env = {"X": "y" * 5_000_000}
        try:
            subprocess.run(["/usr/bin/python3.11", "-c", "pass"], env=env)
        except OSError as e:
            print("E2BIG" if e.errno == 7 else e)
    """)
    )
    assert env_bomb.state is State.SUCCEEDED and env_bomb.stdout == b"E2BIG\n"


async def test_core_dump_attempt(run: Runner) -> None:
    code = src("""
        import os, resource
        print(resource.getrlimit(resource.RLIMIT_CORE), flush=True)
        try:
            resource.setrlimit(resource.RLIMIT_CORE, (1 << 30, 1 << 30))
        except ValueError as e:
            print("raise refused", flush=True)
        os.chdir("/box")
        os.abort()
    """)
    outcome = await run(code)
    assert outcome.state is State.FAILED and outcome.signal == signal.SIGABRT
    assert outcome.stdout == b"(0, 0)\nraise refused\n"
    after = await run("import os\nprint(os.listdir('/box'), os.listdir('/tmp'))")
    assert after.stdout == b"['main.py'] []\n"


async def test_python_runs_isolated_and_its_source_is_read_only(run: Runner) -> None:
    code = src("""
        import sys, os
        print(sys.flags.isolated, sys.flags.no_site, "site" in sys.modules)
        try:
            open(__file__, "a").write("#")
            print("WRITABLE")
        except OSError as e:
            print("read-only", e.errno)
        print(open("data/in.txt").read())
    """)
    outcome = await run(code, files={"data/in.txt": "hello file"})
    assert outcome.state is State.SUCCEEDED, outcome.stderr
    assert outcome.stdout in (b"1 1 False\nread-only 13\nhello file\n", b"1 1 False\nread-only 30\nhello file\n")
