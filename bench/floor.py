"""The floor: bare bubblewrap sandboxes with the local backend's own flags, and plain interpreters, in a loop.

No cgroups, no supervisor, no Kafka: what starting an isolated `python3 -S -c pass` costs on this
machine right now. Every other number of the bench is quoted as a ratio to this one.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass

from runtime.bwrap import SandboxSpec, build_argv
from runtime.languages import LANGUAGES
from runtime.local import ROOT_SYMLINKS
from runtime.seccomp_policy import bpf_fd, compile_bpf
from runtime.workspace import Workspace

PYTHON = "/usr/bin/python3.11"
PASS_ARGV = [PYTHON, "-I", "-S", "-c", "pass"]


@dataclass(frozen=True, slots=True)
class FloorRun:
    latencies_s: list[float]
    elapsed_s: float

    @property
    def rate_per_s(self) -> float:
        return len(self.latencies_s) / self.elapsed_s if self.elapsed_s > 0 else 0.0


def _root_symlinks() -> list[tuple[str, str]]:
    return [(os.readlink(p), p) for p in ROOT_SYMLINKS if os.path.islink(p)]


def bwrap_loop(n: int, state_dir: str, uid: int, bwrap: str = "/usr/bin/bwrap") -> FloorRun:
    """`n` sandboxes one after the other: the same namespaces, mounts, seccomp filter and uid drop as a run."""
    lang = LANGUAGES["python"]
    bpf = compile_bpf()
    ws = Workspace(state_dir, 8, 256)
    ws.create({})
    lat: list[float] = []
    began = time.monotonic()
    try:
        for _ in range(n):
            seccomp_fd = bpf_fd(bpf)
            status_r, status_w = os.pipe()
            spec = SandboxSpec(
                program=PASS_ARGV, workspace=ws.disk, seccomp_fd=seccomp_fd, status_fd=status_w,
                toolchain_paths=lang.toolchain_paths, root_symlinks=_root_symlinks(),
            )  # fmt: skip
            t0 = time.monotonic()
            proc = subprocess.Popen(
                build_argv(bwrap, spec), pass_fds=(seccomp_fd, status_w), env={}, user=uid, group=uid,
                extra_groups=[], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )  # fmt: skip
            os.close(seccomp_fd)
            os.close(status_w)
            _, err = proc.communicate()
            lat.append(time.monotonic() - t0)
            os.close(status_r)
            if proc.returncode != 0:
                raise RuntimeError(f"the bare sandbox failed ({proc.returncode}): {err.decode(errors='replace')}")
    finally:
        ws.destroy()
    return FloorRun(lat, time.monotonic() - began)


def plain_loop(n: int) -> FloorRun:
    lat: list[float] = []
    began = time.monotonic()
    for _ in range(n):
        t0 = time.monotonic()
        subprocess.run(PASS_ARGV, check=True, env={}, stdin=subprocess.DEVNULL)
        lat.append(time.monotonic() - t0)
    return FloorRun(lat, time.monotonic() - began)
