"""The Kubernetes API port: a few raw JSON calls, and its implementation over kubernetes-asyncio.

The backend speaks JSON dicts (the objects kube_manifest builds and kube_outcome reads), so it
needs no generated models: `request` sends and returns JSON, `watch` yields watch events, and
`read_bytes` returns a body as is (pod logs). kubernetes-asyncio supplies the configuration
(kubeconfig or in-cluster), authentication, TLS and the HTTP session.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol

import aiohttp
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config

from runtime.errors import RuntimeSandboxError

JsonObject = dict[str, Any]
Query = Mapping[str, str | int | bool]


class KubeApiError(RuntimeSandboxError):
    """The API server answered with an error status (or could not be reached: status 0)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(f"Kubernetes API error {status}: {message}")


class KubeClient(Protocol):
    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Query | None = None,
        body: JsonObject | None = None,
        content_type: str = "application/json",
    ) -> JsonObject: ...

    def watch(self, path: str, query: Query, read_timeout_s: float) -> AsyncIterator[JsonObject]:
        """The events of one watch request; ends when the server ends it. A 410 raises KubeApiError."""
        ...

    async def read_bytes(self, path: str, *, query: Query | None = None) -> bytes: ...

    def stream_bytes(self, path: str, query: Query, read_timeout_s: float) -> AsyncIterator[bytes]:
        """A body as it arrives (a followed log), chunk by chunk, until the server ends it."""
        ...

    async def close(self) -> None: ...


def status_message(body: bytes) -> str:
    """The reason and message of a Status object, or the start of the body."""
    with contextlib.suppress(ValueError):
        status = json.loads(body)
        if isinstance(status, dict):
            return f"{status.get('reason', '')}: {status.get('message', '')}"
    return body[:200].decode("utf-8", "replace")


def _query(query: Query | None) -> list[tuple[str, str]]:
    out = []
    for key, value in (query or {}).items():
        out.append((key, ("true" if value else "false") if isinstance(value, bool) else str(value)))
    return out


class ApiKubeClient:
    """KubeClient over a kubernetes-asyncio ApiClient."""

    def __init__(self, api: k8s.ApiClient, owns_api: bool = False) -> None:
        self.api = api
        self._owns_api = owns_api

    async def _call(
        self,
        method: str,
        path: str,
        query: Query | None,
        body: JsonObject | None,
        timeout: aiohttp.ClientTimeout,
        content_type: str = "application/json",
    ) -> Any:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        try:
            return await self.api.call_api(  # type: ignore[no-untyped-call]
                path,
                method,
                query_params=_query(query),
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=timeout,
            )
        except aiohttp.ClientError as exc:
            raise KubeApiError(0, f"{type(exc).__name__}: {exc}") from exc

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Query | None = None,
        body: JsonObject | None = None,
        content_type: str = "application/json",
    ) -> JsonObject:
        response = await self._call(method, path, query, body, aiohttp.ClientTimeout(total=60), content_type)
        try:
            data: bytes = await response.read()
        except aiohttp.ClientError as exc:
            raise KubeApiError(0, f"{type(exc).__name__}: {exc}") from exc
        finally:
            response.release()
        if not 200 <= response.status <= 299:
            raise KubeApiError(response.status, status_message(data))
        value = json.loads(data)
        if not isinstance(value, dict):
            raise KubeApiError(response.status, "the answer is not a JSON object")
        return value

    async def read_bytes(self, path: str, *, query: Query | None = None) -> bytes:
        response = await self._call("GET", path, query, None, aiohttp.ClientTimeout(total=60))
        try:
            data: bytes = await response.read()
        except aiohttp.ClientError as exc:
            raise KubeApiError(0, f"{type(exc).__name__}: {exc}") from exc
        finally:
            response.release()
        if not 200 <= response.status <= 299:
            raise KubeApiError(response.status, status_message(data))
        return data

    async def _stream(
        self,
        path: str,
        query: Query,
        read_timeout_s: float,
        read: Callable[[aiohttp.StreamReader], Awaitable[bytes]],
        what: str,
    ) -> AsyncIterator[bytes]:
        """GET `path` and yield what `read(response.content)` returns until the end of the body."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=read_timeout_s)
        response = await self._call("GET", path, query, None, timeout)
        try:
            if not 200 <= response.status <= 299:
                raise KubeApiError(response.status, status_message(await response.read()))
            while True:
                try:
                    piece = await read(response.content)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    raise KubeApiError(0, f"the {what} broke: {type(exc).__name__}: {exc}") from exc
                if not piece:
                    return
                yield piece
        finally:
            response.release()

    async def stream_bytes(self, path: str, query: Query, read_timeout_s: float) -> AsyncIterator[bytes]:
        async for chunk in self._stream(path, query, read_timeout_s, _readany, "stream"):
            yield chunk

    async def watch(self, path: str, query: Query, read_timeout_s: float) -> AsyncIterator[JsonObject]:
        async for line in self._stream(path, {**query, "watch": True}, read_timeout_s, _readline, "watch"):
            if line.strip():
                event = json.loads(line)
                if isinstance(event, dict):
                    yield event

    async def close(self) -> None:
        if self._owns_api:
            await self.api.close()


def _readany(content: aiohttp.StreamReader) -> Awaitable[bytes]:
    return content.readany()


def _readline(content: aiohttp.StreamReader) -> Awaitable[bytes]:
    return content.readline()


async def connect(kubeconfig: str | None = None, context: str | None = None) -> ApiKubeClient:
    """A client from a kubeconfig file, or from the in-cluster service account when None."""
    configuration = k8s.Configuration()
    if kubeconfig is not None:
        await k8s_config.load_kube_config(
            config_file=kubeconfig, context=context, client_configuration=configuration, persist_config=False
        )
    else:
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return ApiKubeClient(k8s.ApiClient(configuration=configuration), owns_api=True)
