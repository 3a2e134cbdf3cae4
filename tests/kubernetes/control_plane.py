"""A real Kubernetes control plane on loopback: etcd, kube-apiserver and kube-controller-manager.

The binaries come from scripts/k8s-control-plane.sh, which builds them from Go modules into a cache
outside the repo (~/.cache/aevatar-sandbox/k8s/<version>/bin) the first time. There is no scheduler
and no kubelet: the tests play the node (tests/kubernetes/node.py).
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import free_port

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "k8s-control-plane.sh"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")
ADMIN_TOKEN = "aevatar-test-admin-token"
CONTROLLERS = "job-controller,garbage-collector-controller,namespace-controller,ttl-after-finished-controller"


class ControlPlaneUnavailable(Exception):
    """The control plane cannot be built or started here; the message says why and what to do."""


def ensure_binaries() -> Path:
    """The directory with the four binaries, building them (once, cached) if needed."""
    if not SCRIPT.exists():
        raise ControlPlaneUnavailable(f"{SCRIPT} is missing")
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ControlPlaneUnavailable(
            "building the Kubernetes control plane failed (scripts/k8s-control-plane.sh, exit "
            f"{proc.returncode}); it needs the go tool (>= 1.26) and the Go module proxy. Its output:\n"
            + (proc.stderr[-4000:] or proc.stdout[-4000:])
        )
    bin_dir = Path(
        subprocess.run(
            ["bash", str(SCRIPT), "--print-bin-dir"], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    missing = [b for b in BINARIES if not (bin_dir / b).is_file()]
    if missing:
        raise ControlPlaneUnavailable(f"{bin_dir} lacks {', '.join(missing)} after the build")
    return bin_dir


@dataclass
class ControlPlane:
    bin_dir: Path
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="aevatar-k8s-")))
    etcd_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.etcd_port}"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def ca_file(self) -> Path:
        return self.root / "certs" / "apiserver.crt"

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the process
        self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise ControlPlaneUnavailable(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")

    def start(self, timeout_s: float = 120.0) -> None:
        try:
            self._start(timeout_s)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout_s: float) -> None:
        root = self.root
        (root / "certs").mkdir(parents=True, exist_ok=True)
        subprocess.run(["openssl", "genrsa", "-out", str(root / "sa.key"), "2048"], check=True, capture_output=True)
        (root / "tokens.csv").write_text(f'{ADMIN_TOKEN},admin,admin-uid,"system:masters"\n')
        peer = free_port()
        self._spawn(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                "--name=test",
                f"--data-dir={root / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=test=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        self._spawn(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.api_port}",
                f"--cert-dir={root / 'certs'}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={root / 'sa.key'}",
                f"--service-account-signing-key-file={root / 'sa.key'}",
                "--authorization-mode=RBAC",
                f"--token-auth-file={root / 'tokens.csv'}",
                "--disable-admission-plugins=ServiceAccount",
                "--endpoint-reconciler-type=none",
                # Watches go to etcd, so compacting etcd expires a watch's resourceVersion (410) on demand.
                "--watch-cache=false",
                "--kubelet-preferred-address-types=InternalIP",
                "--enable-priority-and-fairness=false",
                # Lets the pod log API return stdout and stderr apart (KubernetesConfig.split_log_streams).
                "--feature-gates=PodLogsQuerySplitStreams=true",
                "--v=1",
            ],
        )
        self._wait_ready(timeout_s)
        self._write_kubeconfig()
        self._spawn(
            "kube-controller-manager",
            [
                str(self.bin_dir / "kube-controller-manager"),
                f"--kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                f"--controllers={CONTROLLERS}",
                "--secure-port=0",
                "--use-service-account-credentials=false",
                "--concurrent-job-syncs=5",
                "--v=1",
            ],
        )
        time.sleep(0.5)
        self._check_alive()

    def _wait_ready(self, timeout_s: float) -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            self._check_alive()
            request = urllib.request.Request(
                f"{self.server}/readyz", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
            )
            try:
                with urllib.request.urlopen(request, context=context, timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError as exc:
                last = str(exc)
            time.sleep(0.5)
        raise ControlPlaneUnavailable(
            f"kube-apiserver not ready after {timeout_s}s ({last}):\n{self.log_tail('kube-apiserver')}"
        )

    def _write_kubeconfig(self) -> None:
        self.kubeconfig.write_text(
            f"""apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: {self.server}
    certificate-authority: {self.ca_file}
users:
- name: admin
  user:
    token: {ADMIN_TOKEN}
contexts:
- name: test
  context: {{cluster: test, user: admin}}
current-context: test
"""
        )

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=check,
            env={**os.environ, "HOME": str(self.root)},
        )

    def stop(self) -> None:
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            proc = self.procs.pop(name, None)
            if proc is None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)
