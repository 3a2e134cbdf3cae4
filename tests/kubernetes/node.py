"""The test plays the node: it binds a Job's pod, moves its status through Running to a terminated
state, and serves the containers' logs as a kubelet would (the API server proxies pods/log to it).

Like a kubelet, it also finishes pods that the control plane deletes (cancel, a deadline, the
garbage collector): it marks their containers killed and removes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from runtime.kube_client import KubeApiError, KubeClient

NODE_NAME = "aevatar-test-node"


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class SimulatedNode:
    client: KubeClient
    namespace: str
    cert_dir: Path
    # (pod, container) → (stdout, stderr) the "program" printed so far.
    output: dict[tuple[str, str], tuple[bytes, bytes]] = field(default_factory=dict)
    combined: dict[tuple[str, str], bytes] = field(default_factory=dict)  # both streams in write order
    ended: set[tuple[str, str]] = field(default_factory=set)
    printed: asyncio.Condition = field(default_factory=asyncio.Condition)
    port: int = 0
    _runner: web.AppRunner | None = None
    _reaper: asyncio.Task[None] | None = None
    log_requests: list[dict[str, str]] = field(default_factory=list)

    # -- the kubelet's log endpoint ---------------------------------------------------------------
    async def start(self) -> None:
        self.cert_dir.mkdir(parents=True, exist_ok=True)
        key, crt = self.cert_dir / "kubelet.key", self.cert_dir / "kubelet.crt"
        if not crt.exists():
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(crt),
                 "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                check=True, capture_output=True,
            )  # fmt: skip
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(crt, key)
        app = web.Application()
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self._logs)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        await self._register_node()
        self._reaper = asyncio.create_task(self._reap_deleted())

    async def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        if self._runner is not None:
            await self._runner.cleanup()

    async def _logs(self, request: web.Request) -> web.StreamResponse:
        info = request.match_info
        key = (info["pod"], info["container"])
        self.log_requests.append({**dict(request.query), "pod": key[0], "container": key[1]})
        stream = request.query.get("stream", "All")
        limit = int(request.query.get("limitBytes", "0")) or None

        def body() -> bytes:
            out, err = self.output.get(key, (b"", b""))
            data = {"Stdout": out, "Stderr": err}.get(stream, self.combined.get(key, b""))
            return data[:limit] if limit is not None else data

        if request.query.get("follow") != "true":
            return web.Response(body=body(), content_type="text/plain")
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        sent = 0
        while True:  # like a kubelet: stream what is written, until the container ends
            async with self.printed:
                await self.printed.wait_for(lambda sent=sent: len(body()) > sent or key in self.ended)  # type: ignore[misc]
                data, done = body(), key in self.ended
            if len(data) > sent:
                await response.write(data[sent:])
                sent = len(data)
            if done:
                break
        await response.write_eof()
        return response

    async def print(self, pod: str, stdout: bytes = b"", stderr: bytes = b"", container: str = "run") -> None:
        """The running program writes (the log API serves it at once to followers)."""
        async with self.printed:
            out, err = self.output.get((pod, container), (b"", b""))
            self.output[(pod, container)] = (out + stdout, err + stderr)
            self.combined[(pod, container)] = self.combined.get((pod, container), b"") + stdout + stderr
            self.printed.notify_all()

    async def _register_node(self) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": NODE_NAME},
            "status": {
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}},
            },
        }
        try:
            await self.client.request("POST", "/api/v1/nodes", body=node)
        except KubeApiError as exc:
            if exc.status != 409:
                raise
        # Node status is a subresource: set the kubelet's address and port there.
        await self._merge_patch(f"/api/v1/nodes/{NODE_NAME}/status", {"status": node["status"]})

    # -- pod life ---------------------------------------------------------------------------------
    async def _merge_patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        return await self.client.request("PATCH", path, body=patch, content_type="application/merge-patch+json")

    async def pod_of(self, job_name: str, timeout_s: float = 30.0) -> dict[str, Any]:
        """The pod the job controller created for `job_name`."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline:
            listed = await self.client.request(
                "GET", f"/api/v1/namespaces/{self.namespace}/pods", query={"labelSelector": f"job-name={job_name}"}
            )
            if listed["items"]:
                return listed["items"][0]  # type: ignore[no-any-return]
            await asyncio.sleep(0.1)
        raise AssertionError(f"no pod for Job {job_name} after {timeout_s}s")

    async def bind(self, pod: str) -> None:
        await self.client.request(
            "POST",
            f"/api/v1/namespaces/{self.namespace}/pods/{pod}/binding",
            body={
                "apiVersion": "v1",
                "kind": "Binding",
                "metadata": {"name": pod},
                "target": {"apiVersion": "v1", "kind": "Node", "name": NODE_NAME},
            },
        )

    async def _status(self, pod: str, status: dict[str, Any]) -> None:
        await self._merge_patch(f"/api/v1/namespaces/{self.namespace}/pods/{pod}/status", {"status": status})

    def _container(self, name: str, state: dict[str, Any], ready: bool) -> dict[str, Any]:
        return {
            "name": name,
            "image": "runner",
            "imageID": "runner@sha256:" + "0" * 64,
            "ready": ready,
            "restartCount": 0,
            "started": ready,
            "state": state,
        }

    async def waiting(self, pod: str, reason: str, message: str) -> None:
        """The container cannot start (for example ImagePullBackOff)."""
        state = {"waiting": {"reason": reason, "message": message}}
        await self._status(pod, {"phase": "Pending", "containerStatuses": [self._container("run", state, False)]})

    async def unschedulable(self, pod: str, message: str) -> None:
        condition = {
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": message, "lastTransitionTime": now_rfc3339(),
        }  # fmt: skip
        await self._status(pod, {"phase": "Pending", "conditions": [condition]})

    async def running(self, pod: str, container: str = "run") -> None:
        state = {"running": {"startedAt": now_rfc3339()}}
        await self._status(
            pod,
            {
                "phase": "Running",
                "hostIP": "127.0.0.1",
                "podIP": "10.1.0.2",
                "startTime": now_rfc3339(),
                "containerStatuses": [self._container(container, state, True)],
            },
        )

    async def terminate(
        self,
        pod: str,
        exit_code: int,
        reason: str = "",
        stdout: bytes = b"",
        stderr: bytes = b"",
        container: str = "run",
        init: bool = False,
    ) -> None:
        """The program ended, after writing `stdout` and `stderr`: the pod reaches Succeeded or Failed."""
        await self.print(pod, stdout, stderr, container)
        term = {
            "exitCode": exit_code,
            "reason": reason or ("Completed" if exit_code == 0 else "Error"),
            "startedAt": now_rfc3339(),
            "finishedAt": now_rfc3339(),
        }
        key = "initContainerStatuses" if init else "containerStatuses"
        phase = "Succeeded" if exit_code == 0 and not init else "Failed"
        await self._status(pod, {"phase": phase, key: [self._container(container, {"terminated": term}, False)]})
        async with self.printed:
            self.ended.add((pod, container))
            self.printed.notify_all()

    async def _reap_deleted(self) -> None:
        """Finish pods being deleted (a kubelet kills their containers, then the pod object goes)."""
        path = f"/api/v1/namespaces/{self.namespace}/pods"
        while True:
            try:
                listed = await self.client.request("GET", path)
                for pod in listed["items"]:
                    meta = pod["metadata"]
                    if meta.get("deletionTimestamp") is None:
                        continue
                    name = meta["name"]
                    if pod["status"].get("phase") not in {"Succeeded", "Failed"} and pod["spec"].get("nodeName"):
                        with contextlib.suppress(KubeApiError):
                            await self.terminate(name, 137, "Error")
                    with contextlib.suppress(KubeApiError):
                        await self.client.request("DELETE", f"{path}/{name}", body={"gracePeriodSeconds": 0})
            except KubeApiError:
                pass
            await asyncio.sleep(0.2)
