"""Fixtures: a real control plane (built once into ~/.cache/aevatar-sandbox/k8s/<version>/), a fresh
namespace per test, the test node, and the backend under test.

When the control plane cannot be built or started, every test here FAILS with the reason: the
suite never skips it silently (STYLE.md rule 8).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.kube_client import ApiKubeClient, KubeApiError, connect
from runtime.kube_manifest import KubernetesConfig, parse_images
from runtime.kubernetes import ApiPodLogs, KubernetesHostManager
from tests.kubernetes.control_plane import ControlPlane, ControlPlaneUnavailable, ensure_binaries
from tests.kubernetes.node import SimulatedNode
from tests.kubernetes.real_node import (
    RUNTIMES,
    SERVICE_ACCOUNT,
    ClusterUnavailable,
    LocalCluster,
    Runtime,
    start_cluster,
    stop_cluster,
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "kubernetes: needs the real Kubernetes control plane (built from Go modules)")


_failure: str | None = None
_bin_dir: Path | None = None


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Build (or find in the cache) the control plane once, before any test runs: a cold build takes
    about 10 minutes, which must not count against a test's timeout."""
    global _failure, _bin_dir
    if _bin_dir is not None or _failure is not None:
        return
    if not any(item.get_closest_marker("kubernetes") for item in items):
        return
    try:
        _bin_dir = ensure_binaries()
    except (ControlPlaneUnavailable, OSError) as exc:
        _failure = f"the Kubernetes control plane is unavailable: {exc}"


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    global _failure
    plane: ControlPlane | None = None
    if _failure is None:
        try:
            plane = ControlPlane(_bin_dir or ensure_binaries())
            plane.start()
        except (ControlPlaneUnavailable, OSError) as exc:
            _failure = f"the Kubernetes control plane is unavailable: {exc}"
    if _failure is not None or plane is None:
        pytest.fail(_failure or "the Kubernetes control plane did not start", pytrace=False)
    yield plane
    plane.stop()


@pytest.fixture
async def admin(control_plane: ControlPlane) -> AsyncIterator[ApiKubeClient]:
    client = await connect(str(control_plane.kubeconfig))
    yield client
    await client.close()


@contextlib.asynccontextmanager
async def fresh_namespace(client: ApiKubeClient, labels: dict[str, str] | None = None) -> AsyncIterator[str]:
    """A namespace of its own for one test, deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    metadata: dict[str, Any] = {"name": name, **({"labels": labels} if labels else {})}
    await client.request(
        "POST", "/api/v1/namespaces", body={"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}
    )
    try:
        yield name
    finally:
        with contextlib.suppress(KubeApiError):
            await client.request("DELETE", f"/api/v1/namespaces/{name}")


@pytest.fixture
async def namespace(admin: ApiKubeClient) -> AsyncIterator[str]:
    async with fresh_namespace(admin) as name:
        yield name


@pytest.fixture
async def node(admin: ApiKubeClient, namespace: str, control_plane: ControlPlane) -> AsyncIterator[SimulatedNode]:
    test_node = SimulatedNode(admin, namespace, control_plane.root / "node")
    await test_node.start()
    yield test_node
    await test_node.stop()


def make_config(namespace: str, **overrides: Any) -> KubernetesConfig:
    base = KubernetesConfig(
        namespace=namespace,
        images={"python": "registry.example/aevatar/runner-python:3.11"},
        executor_id="executor-test-0",
        runtime_class_name=None,
        service_account_name=None,
        deadline_slack_ms=0,
        watch_timeout_s=30,
        split_log_streams=True,
        keep_finished_jobs=True,  # the tests read a finished Job's conditions
    )
    return dataclasses.replace(base, **overrides)


@pytest.fixture
async def backend(
    control_plane: ControlPlane, namespace: str, node: SimulatedNode
) -> AsyncIterator[KubernetesHostManager]:
    client = await connect(str(control_plane.kubeconfig))
    manager = KubernetesHostManager(client, make_config(namespace), logs=ApiPodLogs(client, True), owns_client=True)
    await asyncio.wait_for(manager.start(), 30)
    yield manager
    await manager.close()


REPO = Path(__file__).resolve().parents[2]


_cluster_failure: str | None = None


@pytest.fixture(scope="session")
def local_cluster() -> Iterator[LocalCluster]:
    """The local single-node cluster with a real kubelet: started if none runs, stopped if started here."""
    global _cluster_failure
    cluster: LocalCluster | None = None
    if _cluster_failure is None:
        try:
            cluster = start_cluster()
        except (ClusterUnavailable, OSError, subprocess.SubprocessError) as exc:
            _cluster_failure = f"the local Kubernetes cluster is unavailable: {exc}"
    if _cluster_failure is not None or cluster is None:
        pytest.fail(_cluster_failure or "the local Kubernetes cluster did not start", pytrace=False)
    yield cluster
    stop_cluster(cluster)


@pytest.fixture
async def node_admin(local_cluster: LocalCluster) -> AsyncIterator[ApiKubeClient]:
    client = await connect(str(local_cluster.kubeconfig))
    yield client
    await client.close()


@pytest.fixture
async def node_namespace(node_admin: ApiKubeClient) -> AsyncIterator[str]:
    """A fresh namespace on the real cluster, restricted as the sandbox namespace is, with the runs'
    ServiceAccount (no token mounted)."""
    async with fresh_namespace(node_admin, {"pod-security.kubernetes.io/enforce": "restricted"}) as name:
        await node_admin.request(
            "POST",
            f"/api/v1/namespaces/{name}/serviceaccounts",
            body={
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": SERVICE_ACCOUNT},
                "automountServiceAccountToken": False,
            },
        )
        yield name


def node_config(cluster: LocalCluster, namespace: str, **overrides: Any) -> KubernetesConfig:
    """The backend's configuration as `make up-kubernetes` gives it, in the test's namespace."""
    base = KubernetesConfig(
        namespace=namespace,
        images=parse_images(cluster.runner_image, "python,c,cpp,bash"),
        image_pull_policy="Never",
        executor_id=f"executor-{namespace}",
        service_account_name=SERVICE_ACCOUNT,
        deadline_slack_ms=10_000,
        watch_timeout_s=30,
    )
    return dataclasses.replace(base, **overrides)


@pytest.fixture(params=RUNTIMES, ids=[r.handler for r in RUNTIMES])
def runtime(request: pytest.FixtureRequest) -> Runtime:
    """Each real-node test runs once per container runtime: runc, and gVisor as production-gvisor has it."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
async def node_backend(
    local_cluster: LocalCluster, node_namespace: str, runtime: Runtime
) -> AsyncIterator[KubernetesHostManager]:
    client = await connect(str(local_cluster.kubeconfig))
    config = node_config(local_cluster, node_namespace, runtime_class_name=runtime.runtime_class_name)
    manager = KubernetesHostManager(client, config, owns_client=True)
    await asyncio.wait_for(manager.start(), 30)
    yield manager
    await manager.close()
