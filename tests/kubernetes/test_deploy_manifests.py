"""deploy/: every overlay renders with kustomize and is accepted by the real API server (server-side
dry run), Strimzi resources included (their CRDs, vendored in tests/kubernetes/data/strimzi, are
installed first); the executor's RBAC is exactly enough to run a sandbox Job, and no more."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from runtime.kube_client import ApiKubeClient, KubeApiError, connect
from runtime.kube_manifest import job_name
from runtime.kubernetes import KubernetesHostManager
from runtime.types import RunRequest
from streams.states import State
from streams.topics import CATALOG
from tests.kubernetes.conftest import REPO, make_config
from tests.kubernetes.control_plane import ControlPlane
from tests.kubernetes.node import SimulatedNode

pytestmark = [pytest.mark.kubernetes, pytest.mark.timeout(180)]

DEPLOY = REPO / "deploy"
STRIMZI_CRDS = Path(__file__).parent / "data" / "strimzi"
OVERLAYS = sorted(p.parent.name for p in (DEPLOY / "overlays").glob("*/kustomization.yaml"))


def render(plane: ControlPlane, overlay: str) -> list[dict[str, Any]]:
    built = plane.kubectl("kustomize", str(DEPLOY / "overlays" / overlay), check=False)
    assert built.returncode == 0, built.stderr
    return [d for d in yaml.safe_load_all(built.stdout) if d]


@pytest.fixture(scope="session")
def cluster_ready(control_plane: ControlPlane) -> ControlPlane:
    """The Strimzi CRDs installed, and the two namespaces of deploy/base created for real."""
    for crd in sorted(STRIMZI_CRDS.glob("*.yaml")):
        result = control_plane.kubectl("apply", "--server-side", "-f", str(crd), check=False)
        assert result.returncode == 0, result.stderr
    # `kubectl wait` fails outright ("accessor error: <nil>") when it reads a CRD before the API server
    # has written its first status; only that case is retried.
    deadline = time.monotonic() + 60
    while True:
        waited = control_plane.kubectl(
            "wait", "--for=condition=Established", "--timeout=60s",
            "crd/kafkas.kafka.strimzi.io", "crd/kafkatopics.kafka.strimzi.io", "crd/kafkanodepools.kafka.strimzi.io",
            check=False,
        )  # fmt: skip
        if waited.returncode == 0 or "accessor error" not in waited.stderr or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert waited.returncode == 0, waited.stderr
    namespaces = [d for d in render(control_plane, "production") if d["kind"] == "Namespace"]
    applied = control_plane.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(namespaces), check=False)
    assert applied.returncode == 0, applied.stderr
    return control_plane


def test_there_are_overlays() -> None:
    assert {"dev", "production", "production-gvisor"} <= set(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_manifest_is_accepted_by_the_api_server(cluster_ready: ControlPlane, overlay: str) -> None:
    docs = render(cluster_ready, overlay)
    result = cluster_ready.kubectl(
        "apply", "--dry-run=server", "--server-side", "--field-manager=aevatar-test", "-f", "-",
        stdin=yaml.safe_dump_all(docs), check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    accepted = [line for line in result.stdout.splitlines() if "(server dry run)" in line]
    assert len(accepted) == len(docs), result.stdout
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy"} <= kinds
    assert {"ResourceQuota", "LimitRange", "Role", "RoleBinding", "ServiceAccount"} <= kinds
    if overlay.startswith("production"):
        assert {"Kafka", "KafkaNodePool", "KafkaTopic"} <= kinds


def test_the_strimzi_schema_is_really_checked(cluster_ready: ControlPlane) -> None:
    bad = {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": "KafkaTopic",
        "metadata": {"name": "bad-topic", "namespace": "aevatar", "labels": {"strimzi.io/cluster": "aevatar-kafka"}},
        "spec": {"partitions": "twelve", "replicas": 3},
    }
    result = cluster_ready.kubectl("apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(bad), check=False)
    assert result.returncode != 0 and "partitions" in result.stderr


def test_kafka_topics_match_the_topic_catalog() -> None:
    docs = [d for d in yaml.safe_load_all((DEPLOY / "strimzi" / "topics.yaml").read_text()) if d]
    topics = {d["spec"]["topicName"]: d for d in docs}
    assert set(topics) == {spec.name("") for spec in CATALOG}
    for spec in CATALOG:
        doc = topics[spec.name("")]
        assert doc["metadata"]["name"] == spec.name("")
        assert doc["metadata"]["labels"]["strimzi.io/cluster"] == "aevatar-kafka"
        config = doc["spec"]["config"]
        assert {k: config[k] for k in spec.configs()} == spec.configs()
        if spec.partitions is not None:
            assert doc["spec"]["partitions"] == spec.partitions


def test_deployments_have_probes_and_restricted_security() -> None:
    docs = [d for d in yaml.safe_load_all((DEPLOY / "base" / "gateway.yaml").read_text()) if d]
    for name in ("processors.yaml", "executor.yaml"):
        docs += [d for d in yaml.safe_load_all((DEPLOY / "base" / name).read_text()) if d]
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    assert {d["metadata"]["name"] for d in deployments} == {
        "aevatar-gateway", "aevatar-validation", "aevatar-scheduling", "aevatar-completion", "aevatar-executor",
    }  # fmt: skip
    for d in deployments:
        pod = d["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        assert "readinessProbe" in c and "livenessProbe" in c, d["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        # Only the executor talks to the API server.
        assert pod["automountServiceAccountToken"] is (d["metadata"]["name"] == "aevatar-executor")


def test_executor_role_is_least_privilege() -> None:
    docs = [d for d in yaml.safe_load_all((DEPLOY / "base" / "executor-rbac.yaml").read_text()) if d]
    (role,) = [d for d in docs if d["kind"] == "Role"]
    assert role["metadata"]["namespace"] == "aevatar-sandbox"
    rules = {
        (g, r): sorted(rule["verbs"]) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
    }
    assert rules == {
        ("batch", "jobs"): ["create", "delete", "list", "watch"],
        ("", "pods"): ["get", "list", "watch"],
        ("", "pods/log"): ["get"],
        ("", "configmaps"): ["create"],
    }
    assert not [d for d in docs if d["kind"] in {"ClusterRole", "ClusterRoleBinding"}]


async def _can(client: ApiKubeClient, verb: str, resource: str, namespace: str, group: str = "", sub: str = "") -> bool:
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"verb": verb, "resource": resource, "group": group, "namespace": namespace,
                                        "subresource": sub}},
    }  # fmt: skip
    answer = await client.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body=review)
    return bool(answer["status"].get("allowed"))


async def test_the_executor_service_account_can_run_a_sandbox_job_and_nothing_more(
    cluster_ready: ControlPlane, admin: ApiKubeClient
) -> None:
    """deploy/base for real (restricted Pod Security enforced on aevatar-sandbox), then a run with the
    executor's own token: its RBAC suffices, and the Job's pod passes the restricted standard."""
    base = cluster_ready.kubectl("kustomize", str(DEPLOY / "base"))
    wanted = {"Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "ServiceAccount", "Role", "RoleBinding"}
    docs = [d for d in yaml.safe_load_all(base.stdout) if d and d["kind"] in wanted]
    applied = cluster_ready.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(docs), check=False)
    assert applied.returncode == 0, applied.stderr
    # The namespace really enforces the restricted standard: a plain pod is refused.
    plain = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "plain"},
        "spec": {"containers": [{"name": "c", "image": "x"}]},
    }
    with pytest.raises(KubeApiError, match="PodSecurity"):
        await admin.request("POST", "/api/v1/namespaces/aevatar-sandbox/pods", query={"dryRun": "All"}, body=plain)
    token = await admin.request(
        "POST",
        "/api/v1/namespaces/aevatar/serviceaccounts/aevatar-executor/token",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}},
    )
    kubeconfig = cluster_ready.root / "executor.kubeconfig"
    kubeconfig.write_text(
        cluster_ready.kubeconfig.read_text().replace("aevatar-test-admin-token", token["status"]["token"])
    )
    client = await connect(str(kubeconfig))
    node = SimulatedNode(admin, "aevatar-sandbox", cluster_ready.root / "node")
    await node.start()
    config = make_config(
        "aevatar-sandbox", service_account_name="aevatar-sandbox-run", executor_id="rbac-test", split_log_streams=False
    )
    manager = KubernetesHostManager(client, config, owns_client=True)  # logs: ApiPodLogs, both streams as one
    try:
        sandbox = "aevatar-sandbox"
        assert await _can(client, "create", "jobs", sandbox, "batch")
        assert not await _can(client, "create", "jobs", "default", "batch")
        assert not await _can(client, "create", "pods", sandbox)
        assert not await _can(client, "get", "secrets", sandbox)
        assert not await _can(client, "update", "jobs", sandbox, "batch")
        assert not await _can(client, "create", "pods", sandbox, sub="exec")

        req = RunRequest(execution_id=f"rbac-{uuid.uuid4().hex[:8]}", language="python", code="print(1)")
        task = asyncio.create_task(manager.run(req))
        pod = (await node.pod_of(job_name(req.execution_id)))["metadata"]["name"]
        await node.bind(pod)
        await node.running(pod)
        await node.terminate(pod, 0, stdout=b"1\n")
        outcome = await asyncio.wait_for(task, 30)
        assert (outcome.state, outcome.stdout, outcome.error) == (State.SUCCEEDED, b"1\n", None)

        cancelled = RunRequest(execution_id=f"rbac-{uuid.uuid4().hex[:8]}", language="python", code="1")
        task = asyncio.create_task(manager.run(cancelled))
        await node.pod_of(job_name(cancelled.execution_id))
        assert await manager.cancel(cancelled.execution_id)
        assert (await asyncio.wait_for(task, 30)).state is State.CANCELLED
        with pytest.raises(KubeApiError) as denied:
            await client.request("GET", f"/api/v1/namespaces/{sandbox}/secrets")
        assert denied.value.status == 403
    finally:
        await manager.close()
        await node.stop()
