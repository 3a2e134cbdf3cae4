"""Fixtures: a real control plane (built once into ~/.cache/aevatar-sandbox/k8s/<version>/), a fresh
namespace per test, the test node, and the backend under test.

When the control plane cannot be built or started, every test here FAILS with the reason: the
suite never skips it silently (STYLE.md rule 8).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.kube_client import ApiKubeClient, KubeApiError, connect
from runtime.kube_manifest import KubernetesConfig
from runtime.kubernetes import ApiPodLogs, KubernetesHostManager
from tests.kubernetes.control_plane import ControlPlane, ControlPlaneUnavailable, ensure_binaries
from tests.kubernetes.node import SimulatedNode


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


@pytest.fixture
async def namespace(admin: ApiKubeClient) -> AsyncIterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    await admin.request(
        "POST", "/api/v1/namespaces", body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    yield name
    with contextlib.suppress(KubeApiError):
        await admin.request("DELETE", f"/api/v1/namespaces/{name}")


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
