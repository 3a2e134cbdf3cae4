"""The local single-node cluster with a real kubelet (scripts/k8s-cluster.sh), for the tests that run
real pods: containerd 2, runc and gVisor (runsc), the project's own images, and the pipeline on top.

One cluster runs per machine (the node is named localhost). A test session uses the one that runs,
or starts one and stops it at the end. When it cannot start, the tests FAIL with the reason.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "k8s-cluster.sh"
SERVICE_ACCOUNT = "aevatar-sandbox-run"


@dataclass(frozen=True)
class Runtime:
    """A container runtime of the real node: its CRI handler and the RuntimeClass that selects it."""

    handler: str
    runtime_class_name: str | None  # None: the node's default (runc), as without any RuntimeClass


# runc, the cluster's default, and gVisor as the production-gvisor overlay selects it: the RuntimeClass
# "gvisor" of deploy/components/gvisor (handler runsc), which scripts/k8s-cluster.sh registers.
RUNTIMES = (Runtime("runc", None), Runtime("runsc", "gvisor"))


class ClusterUnavailable(Exception):
    """The local cluster cannot be started here; the message says why."""


@dataclass(frozen=True)
class LocalCluster:
    kubeconfig: Path
    runner_image: str
    pause_image: str
    bin_dir: Path
    started_here: bool

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            check=check,
        )


def _script(*args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout_s, check=False)


def start_cluster() -> LocalCluster:
    running = _script("status", timeout_s=30).returncode == 0
    proc = _script("start", timeout_s=1800)  # also when running: builds and imports newer images
    if proc.returncode != 0:
        raise ClusterUnavailable(
            f"scripts/k8s-cluster.sh start failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
        )
    env = dict(line.split("=", 1) for line in _script("env", timeout_s=30).stdout.splitlines() if "=" in line)
    bin_dir = subprocess.run(
        ["bash", str(REPO / "scripts" / "k8s-control-plane.sh"), "--print-bin-dir"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if "RUNNER_IMAGE" not in env:
        raise ClusterUnavailable(f"scripts/k8s-cluster.sh env names no runner image: {env}")
    return LocalCluster(
        Path(env["KUBECONFIG"]), env["RUNNER_IMAGE"], env["PAUSE_IMAGE"], Path(bin_dir), started_here=not running
    )


def stop_cluster(cluster: LocalCluster) -> None:
    if cluster.started_here:
        _script("stop", timeout_s=120)
