"""KubernetesHostManager against a real kube-apiserver and kube-controller-manager; the test is the node."""

from __future__ import annotations

import asyncio
import base64
import uuid
from typing import Any

import pytest

from runtime.kube_client import ApiKubeClient, KubeApiError, connect
from runtime.kube_manifest import LABEL_EXECUTION, LABEL_EXECUTOR, job_name, label_value
from runtime.kubernetes import ApiPodLogs, KubernetesHostManager
from runtime.types import Limits, Outcome, OutputChunk, RunRequest
from streams.states import Limit, State
from tests.kubernetes.conftest import make_config
from tests.kubernetes.control_plane import ControlPlane
from tests.kubernetes.node import SimulatedNode

pytestmark = [pytest.mark.kubernetes, pytest.mark.timeout(120)]


def request(code: str = "print('hi')", stdin: bytes = b"", **limits: int) -> RunRequest:
    return RunRequest(
        execution_id=f"exec-{uuid.uuid4().hex[:12]}",
        language="python",
        code=code,
        files={"data/input.txt": "42\n"},
        stdin=stdin,
        args=("--flag",),
        limits=Limits(**limits),
    )


async def get_job(admin: ApiKubeClient, namespace: str, name: str) -> dict[str, Any]:
    return await admin.request("GET", f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}")


async def gone(admin: ApiKubeClient, path: str, timeout_s: float = 30.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        try:
            await admin.request("GET", path)
        except KubeApiError as exc:
            if exc.status == 404:
                return True
            raise
        await asyncio.sleep(0.2)
    return False


async def test_job_carries_every_security_setting_and_runs(
    control_plane: ControlPlane, admin: ApiKubeClient, namespace: str, node: SimulatedNode
) -> None:
    await admin.request(
        "POST",
        "/apis/node.k8s.io/v1/runtimeclasses",
        body={
            "apiVersion": "node.k8s.io/v1",
            "kind": "RuntimeClass",
            "metadata": {"name": f"gvisor-{namespace}"},
            "handler": "runsc",
        },
    )
    await admin.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts",
        body={
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "runner"},
            "automountServiceAccountToken": False,
        },
    )
    client = await connect(str(control_plane.kubeconfig))
    config = make_config(
        namespace, runtime_class_name=f"gvisor-{namespace}", service_account_name="runner", deadline_slack_ms=2000
    )
    manager = KubernetesHostManager(client, config, logs=ApiPodLogs(client, True), owns_client=True)
    try:
        req = request(stdin=b"stdin bytes \x00\xff", wall_time_ms=7500, memory_mib=200, disk_mib=32)
        chunks: list[OutputChunk] = []

        async def on_output(chunk: OutputChunk) -> None:
            chunks.append(chunk)

        task = asyncio.create_task(manager.run(req, on_output))
        name = job_name(req.execution_id)
        pod = await node.pod_of(name)
        watches_before = manager.pods.stats.watches

        job = await get_job(admin, namespace, name)
        spec, meta = job["spec"], job["metadata"]
        assert spec["backoffLimit"] == 0
        assert spec["activeDeadlineSeconds"] == 10  # ceil((7500 + 2000) / 1000)
        assert spec["ttlSecondsAfterFinished"] == 300
        assert meta["labels"][LABEL_EXECUTION] == label_value(req.execution_id)
        assert meta["labels"][LABEL_EXECUTOR] == "executor-test-0"
        assert meta["annotations"]["sandbox.aevatar.dev/execution-id"] == req.execution_id
        for pod_spec in (spec["template"]["spec"], pod["spec"]):  # the Job's template, and the pod made from it
            assert pod_spec["automountServiceAccountToken"] is False
            assert pod_spec["enableServiceLinks"] is False
            assert pod_spec["runtimeClassName"] == f"gvisor-{namespace}"
            assert pod_spec["serviceAccountName"] == "runner"
            assert pod_spec["restartPolicy"] == "Never"
            psc = pod_spec["securityContext"]
            assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 65532
            assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
            (container,) = pod_spec["containers"]
            sc = container["securityContext"]
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 65532
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
            assert container["resources"] == {
                "requests": {"cpu": "250m", "memory": "232Mi"},  # memory + the in-memory disk
                "limits": {"cpu": "1", "memory": "232Mi"},
            }
            assert container["image"] == "registry.example/aevatar/runner-python:3.11"
            assert container["command"][-5:] == ["/usr/bin/python3.11", "-I", "-S", "main.py", "--flag"]
            volumes = {v["name"]: v for v in pod_spec["volumes"]}
            assert volumes["scratch"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "32Mi"}
            assert volumes["input"]["configMap"]["name"] == name
            mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
            assert mounts["/tmp"]["name"] == mounts["/work"]["name"] == "scratch"
            assert mounts["/input"]["readOnly"] is True

        configmap = await admin.request("GET", f"/api/v1/namespaces/{namespace}/configmaps/{name}")
        (owner,) = configmap["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"]) == ("Job", name, meta["uid"])
        data = {k: base64.b64decode(v) for k, v in configmap["binaryData"].items()}
        assert data["stdin"] == b"stdin bytes \x00\xff"
        assert sorted(data.values()) == sorted([b"stdin bytes \x00\xff", b"print('hi')", b"42\n"])

        # Pending with nothing happening: the backend waits on its watch, it does not poll.
        await asyncio.sleep(3)
        assert manager.pods.stats.watches == watches_before
        assert manager.pods.stats.lists == 1

        await node.bind(pod["metadata"]["name"])
        await node.running(pod["metadata"]["name"])
        await node.terminate(pod["metadata"]["name"], 0, stdout=b"hi\n", stderr=b"warn\n")
        outcome = await asyncio.wait_for(task, 30)
        assert (outcome.state, outcome.exit_code, outcome.error) == (State.SUCCEEDED, 0, None)
        assert (outcome.stdout, outcome.stderr) == (b"hi\n", b"warn\n")
        assert b"".join(c.data for c in chunks if c.stream == "stdout") == b"hi\n"
        # The logs came through the API server's pods/log, proxied to this node's kubelet endpoint.
        assert {r["container"] for r in node.log_requests} == {"run"}
        assert {r.get("stream") for r in node.log_requests} == {"Stdout", "Stderr"}
    finally:
        await manager.close()


@pytest.mark.parametrize(
    ("exit_code", "reason", "state", "limit", "want_exit", "want_signal"),
    [
        (0, "Completed", State.SUCCEEDED, None, 0, None),
        (3, "Error", State.FAILED, None, 3, None),
        (137, "OOMKilled", State.LIMIT_EXCEEDED, Limit.MEMORY, None, 9),
        (139, "Error", State.FAILED, None, None, 11),
    ],
)
async def test_simulated_end_becomes_the_outcome(
    backend: KubernetesHostManager,
    node: SimulatedNode,
    exit_code: int,
    reason: str,
    state: State,
    limit: Limit | None,
    want_exit: int | None,
    want_signal: int | None,
) -> None:
    req = request()
    task = asyncio.create_task(backend.run(req))
    pod = (await node.pod_of(job_name(req.execution_id)))["metadata"]["name"]
    await node.bind(pod)
    await node.running(pod)
    await node.terminate(pod, exit_code, reason, stdout=b"out", stderr=b"err")
    outcome = await asyncio.wait_for(task, 30)
    assert (outcome.state, outcome.limit, outcome.exit_code, outcome.signal) == (state, limit, want_exit, want_signal)
    assert (outcome.stdout, outcome.stderr) == (b"out", b"err")


@pytest.mark.parametrize("split", [True, False])
async def test_output_streams_live_while_the_program_runs(
    control_plane: ControlPlane, namespace: str, node: SimulatedNode, split: bool
) -> None:
    client = await connect(str(control_plane.kubeconfig))
    manager = KubernetesHostManager(client, make_config(namespace, split_log_streams=split), owns_client=True)
    chunks: list[OutputChunk] = []

    async def on_output(chunk: OutputChunk) -> None:
        chunks.append(chunk)

    try:
        req = request()
        task = asyncio.create_task(manager.run(req, on_output))
        pod = (await node.pod_of(job_name(req.execution_id)))["metadata"]["name"]
        await node.bind(pod)
        await node.running(pod)
        await node.print(pod, stdout=b"first\n", stderr=b"oops\n")
        for _ in range(100):  # the program is still running: the output arrives anyway
            if len(b"".join(c.data for c in chunks)) >= 11:
                break
            await asyncio.sleep(0.1)
        assert not task.done()
        assert sorted(b"".join(c.data for c in chunks).splitlines()) == [b"first", b"oops"]
        await node.terminate(pod, 0, stdout=b"second\n")
        outcome = await asyncio.wait_for(task, 30)
        streams = {"stdout": outcome.stdout, "stderr": outcome.stderr}
        for name, data in streams.items():  # each byte sent once, at its offset
            mine = [c for c in chunks if c.stream == name]
            assert b"".join(c.data for c in mine) == data
            assert [c.offset for c in mine] == [sum(len(x.data) for x in mine[:i]) for i in range(len(mine))]
        if split:
            assert (outcome.stdout, outcome.stderr) == (b"first\nsecond\n", b"oops\n")
        else:  # one interleaved stream, reported as stdout
            assert (outcome.stdout, outcome.stderr) == (b"first\noops\nsecond\n", b"")
    finally:
        await manager.close()


async def test_output_past_the_limit_is_truncated(backend: KubernetesHostManager, node: SimulatedNode) -> None:
    req = request(output_bytes=10)
    task = asyncio.create_task(backend.run(req))
    pod = (await node.pod_of(job_name(req.execution_id)))["metadata"]["name"]
    await node.bind(pod)
    await node.running(pod)
    await node.terminate(pod, 0, stdout=b"x" * 50)
    outcome = await asyncio.wait_for(task, 30)
    assert (outcome.state, outcome.limit) == (State.LIMIT_EXCEEDED, Limit.OUTPUT)
    assert outcome.stdout == b"x" * 10 and outcome.truncated_stdout


async def test_deadline_exceeded_is_the_wall_time_limit(
    admin: ApiKubeClient, namespace: str, backend: KubernetesHostManager, node: SimulatedNode
) -> None:
    req = request(wall_time_ms=1500)
    task = asyncio.create_task(backend.run(req))
    name = job_name(req.execution_id)
    pod = (await node.pod_of(name))["metadata"]["name"]
    await node.bind(pod)
    await node.running(pod)  # ... and the program never ends: the job controller's deadline ends it
    outcome = await asyncio.wait_for(task, 60)
    assert (outcome.state, outcome.limit) == (State.LIMIT_EXCEEDED, Limit.WALL_TIME)
    job = await get_job(admin, namespace, name)
    reasons = {c["reason"] for c in job["status"].get("conditions", []) if c["status"] == "True"}
    assert "DeadlineExceeded" in reasons


@pytest.mark.parametrize("trouble", ["ImagePullBackOff", "Unschedulable"])
async def test_a_pod_that_never_starts_is_an_error_with_the_reason(
    control_plane: ControlPlane, admin: ApiKubeClient, namespace: str, node: SimulatedNode, trouble: str
) -> None:
    client = await connect(str(control_plane.kubeconfig))
    manager = KubernetesHostManager(client, make_config(namespace, start_timeout_ms=2000), owns_client=True)
    try:
        req = request(wall_time_ms=30_000)
        task = asyncio.create_task(manager.run(req))
        name = job_name(req.execution_id)
        pod = (await node.pod_of(name))["metadata"]["name"]
        if trouble == "Unschedulable":
            await node.unschedulable(pod, "0/3 nodes are available: 3 Insufficient memory.")
        else:
            await node.bind(pod)
            await node.waiting(pod, "ImagePullBackOff", 'Back-off pulling image "runner"')
        outcome = await asyncio.wait_for(task, 30)
        assert outcome.state is State.ERROR
        assert outcome.error is not None and trouble in outcome.error
        assert await gone(admin, f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}")
    finally:
        await manager.close()


async def test_cancel_deletes_the_job_and_its_pod(
    admin: ApiKubeClient, namespace: str, backend: KubernetesHostManager, node: SimulatedNode
) -> None:
    req = request(wall_time_ms=30_000)
    task = asyncio.create_task(backend.run(req))
    name = job_name(req.execution_id)
    pod = (await node.pod_of(name))["metadata"]["name"]
    await node.bind(pod)
    await node.running(pod)
    assert await backend.cancel(req.execution_id) is True
    outcome = await asyncio.wait_for(task, 30)
    assert outcome.state is State.CANCELLED
    assert await gone(admin, f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}")
    assert await gone(admin, f"/api/v1/namespaces/{namespace}/pods/{pod}")
    assert await gone(admin, f"/api/v1/namespaces/{namespace}/configmaps/{name}")  # garbage-collected with the Job
    assert await backend.cancel(req.execution_id) is False


async def compact_etcd(control_plane: ControlPlane) -> int:
    """Compact etcd at its current revision (through its JSON gateway): older resourceVersions expire."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.post(f"{control_plane.etcd_url}/v3/kv/range", json={"key": "AA=="}) as response:
            revision = int((await response.json())["header"]["revision"])
        async with session.post(
            f"{control_plane.etcd_url}/v3/kv/compaction", json={"revision": str(revision), "physical": True}
        ) as response:
            assert response.status == 200, await response.text()
    return revision


async def test_a_watch_that_expires_mid_run_does_not_lose_the_run(
    control_plane: ControlPlane, backend: KubernetesHostManager, node: SimulatedNode
) -> None:
    req = request()
    task = asyncio.create_task(backend.run(req))
    pod = (await node.pod_of(job_name(req.execution_id)))["metadata"]["name"]
    await node.bind(pod)
    await node.running(pod)
    # The connection drops (the watches stop), the run ends meanwhile, and etcd compacts past the
    # watches' resourceVersion: when they re-open, the API server answers 410 Gone.
    for informer_task in backend._tasks:
        informer_task.cancel()
    await asyncio.gather(*backend._tasks, return_exceptions=True)
    await node.terminate(pod, 0, stdout=b"done")
    # One more write, so that the compaction lands strictly past the first revision the watches
    # would ask for (410); exactly at it, the API server answers 500 instead, which also ends in a list.
    marker = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "compaction-marker"}}
    await node.client.request("POST", f"/api/v1/namespaces/{node.namespace}/configmaps", body=marker)
    await compact_etcd(control_plane)
    lists_before = backend.pods.stats.lists
    backend._tasks = [asyncio.create_task(i.run()) for i in (backend.jobs, backend.pods)]
    done, _ = await asyncio.wait({task}, timeout=30)
    assert done, f"no outcome: jobs {backend.jobs.stats} {backend.jobs.last_error}; pods {backend.pods.stats}"
    outcome = task.result()
    assert (outcome.state, outcome.stdout) == (State.SUCCEEDED, b"done")
    assert backend.pods.stats.expired >= 1
    assert backend.pods.stats.lists > lists_before


async def test_a_restarted_executor_readopts_its_running_jobs(
    control_plane: ControlPlane, admin: ApiKubeClient, namespace: str, node: SimulatedNode
) -> None:
    first_client = await connect(str(control_plane.kubeconfig))
    first = KubernetesHostManager(first_client, make_config(namespace), owns_client=True)
    reqs = [request(), request()]
    tasks = [asyncio.create_task(first.run(r)) for r in reqs]
    pods = [(await node.pod_of(job_name(r.execution_id)))["metadata"]["name"] for r in reqs]
    # The executor dies: its tasks vanish without cleaning up (nothing deletes the Jobs).
    for t in [*tasks, *first._tasks]:
        t.cancel()
    await asyncio.gather(*tasks, *first._tasks, return_exceptions=True)
    await first_client.close()

    second_client = await connect(str(control_plane.kubeconfig))
    second = KubernetesHostManager(
        second_client, make_config(namespace), logs=ApiPodLogs(second_client, True), owns_client=True
    )
    other = KubernetesHostManager(second_client, make_config(namespace, executor_id="someone-else"))
    try:
        assert await other.adopt() == []
        assert await second.adopt() == sorted(r.execution_id for r in reqs)
        attached = asyncio.create_task(second.attach(reqs[0].execution_id))
        rerun = asyncio.create_task(second.run(reqs[1]))  # a redelivered launch: adopts, creates nothing
        for pod, code in zip(pods, (0, 4), strict=True):
            await node.bind(pod)
            await node.running(pod)
            await node.terminate(pod, code, stdout=b"mine")
        results: list[Outcome] = [await asyncio.wait_for(attached, 30), await asyncio.wait_for(rerun, 30)]
        assert [(o.state, o.exit_code, o.stdout) for o in results] == [
            (State.SUCCEEDED, 0, b"mine"),
            (State.FAILED, 4, b"mine"),
        ]
        listed = await admin.request("GET", f"/apis/batch/v1/namespaces/{namespace}/jobs")
        assert len(listed["items"]) == 2
    finally:
        await other.close()
        await second.close()
