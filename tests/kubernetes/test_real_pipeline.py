"""The whole pipeline on the Kubernetes backend and a real node: an HTTP request becomes a Kafka event,
then a Job, then a real pod, then a result on sandbox.results, read back through the gateway.

The processors run as `aevatar-sandbox worker all` subprocesses with the settings `make up-kubernetes`
gives them (AEVATAR_SANDBOX_BACKEND=kubernetes, the local cluster's kubeconfig and images).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from runtime.kube_client import ApiKubeClient
from streams.settings import Settings
from tests.gateway.helpers import running_gateway
from tests.kubernetes.real_node import SERVICE_ACCOUNT, LocalCluster, Runtime

pytestmark = [pytest.mark.kafka, pytest.mark.kubernetes, pytest.mark.timeout(240)]

WAIT_S = 120


def kube_env(cluster: LocalCluster, namespace: str, **extra: str) -> dict[str, str]:
    return {
        "AEVATAR_SANDBOX_BACKEND": "kubernetes",
        "AEVATAR_KUBECONFIG": str(cluster.kubeconfig),
        "AEVATAR_K8S_NAMESPACE": namespace,
        "AEVATAR_K8S_IMAGES": cluster.runner_image,
        "AEVATAR_K8S_IMAGE_PULL_POLICY": "Never",
        **extra,
    }


async def post_and_wait(gw: Any, body: dict[str, Any]) -> dict[str, Any]:
    response = await gw.client.post("/v1/executions?wait=true", json=body, timeout=WAIT_S + 10)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_http_to_kafka_to_a_real_pod_and_back(
    settings: Settings, start_worker: Any, local_cluster: LocalCluster, node_namespace: str, runtime: Runtime
) -> None:
    assert SERVICE_ACCOUNT  # the namespace fixture made the runs' ServiceAccount
    # runsc: the executor as deploy/components/gvisor patches it (AEVATAR_K8S_RUNTIME_CLASS=gvisor).
    extra = {"AEVATAR_K8S_RUNTIME_CLASS": runtime.runtime_class_name} if runtime.runtime_class_name else {}
    start_worker(settings, "all", env=kube_env(local_cluster, node_namespace, **extra))
    async with running_gateway(settings, max_wait_ms=WAIT_S * 1000) as gw:
        hello = await post_and_wait(
            gw, {"language": "python", "code": "import os\nprint('hello')\nprint(os.uname().release)"}
        )
        assert (hello["state"], hello["exit_code"]) == ("SUCCEEDED", 0), hello
        greeting, kernel = hello["stdout"].splitlines()
        assert greeting == "hello" and ("gvisor" in kernel) is (runtime.handler == "runsc")
        assert hello["usage"]["cpu_time_ms"] > 0 and hello["usage"]["memory_peak_kib"] > 0
        fail = await post_and_wait(
            gw, {"language": "python", "code": "import sys\nprint('no', file=sys.stderr)\nsys.exit(3)\n"}
        )
        assert (fail["state"], fail["exit_code"], fail["signal"], fail["stderr"]) == ("FAILED", 3, None, "no\n")
        broken = await post_and_wait(gw, {"language": "c", "code": "int main(void) { return nope; }\n"})
        assert broken["state"] == "COMPILE_ERROR" and "nope" in broken["compile_output"]
        slow = await post_and_wait(
            gw, {"language": "python", "code": "while True:\n    pass\n", "limits": {"wall_time_ms": 1000}}
        )
        assert (slow["state"], slow["limit"]) == ("LIMIT_EXCEEDED", "wall_time")
        events = (await gw.client.get(f"/v1/executions/{hello['id']}/events")).json()
        states = [e["state"] for e in events]
        assert states[0] == "REQUESTED" and "STARTED" in states and states[-1] == "SUCCEEDED"


async def running_pods(admin: ApiKubeClient, namespace: str) -> list[str]:
    listed = await admin.request("GET", f"/api/v1/namespaces/{namespace}/pods")
    return [
        p["metadata"]["name"] for p in listed.get("items") or [] if (p.get("status") or {}).get("phase") == "Running"
    ]


async def test_a_killed_worker_restarts_and_adopts_the_running_pod(
    settings: Settings,
    start_worker: Any,
    local_cluster: LocalCluster,
    node_namespace: str,
    node_admin: ApiKubeClient,
) -> None:
    env = kube_env(local_cluster, node_namespace, AEVATAR_EXECUTOR_ID="kube-executor-0", AEVATAR_LEASE_MS="3000")
    first = start_worker(settings, "all", env=env)
    async with running_gateway(settings, max_wait_ms=WAIT_S * 1000) as gw:
        code = "import time\nprint('begun', flush=True)\ntime.sleep(8)\nprint('ran once')\n"
        accepted = (
            await gw.client.post(
                "/v1/executions", json={"language": "python", "code": code, "limits": {"wall_time_ms": 30_000}}
            )
        ).json()
        pods: list[str] = []
        for _ in range(600):
            pods = await running_pods(node_admin, node_namespace)
            if pods:
                break
            await asyncio.sleep(0.1)
        assert len(pods) == 1
        first.kill()  # kill -9 while the program runs in its pod
        start_worker(settings, "all", env=env)
        final: dict[str, Any] = {}
        for _ in range(WAIT_S * 4):
            final = (await gw.client.get(f"/v1/executions/{accepted['id']}")).json()
            if final.get("state") in {"SUCCEEDED", "FAILED", "ERROR", "LIMIT_EXCEEDED"}:
                break
            await asyncio.sleep(0.25)
        assert (final["state"], final["stdout"]) == ("SUCCEEDED", "begun\nran once\n"), final
        # The pod that ran it is the one started before the kill: no second pod ran the code.
        listed = await node_admin.request("GET", f"/api/v1/namespaces/{node_namespace}/pods")
        assert {p["metadata"]["name"] for p in listed.get("items") or []} <= set(pods)
