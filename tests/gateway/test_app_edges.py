"""The HTTP edge with in-memory ports: readiness, error shapes, body limits (no claim about Kafka here)."""

from __future__ import annotations

import asyncio
import socket

import httpx

from gateway.app import Services, build_app
from gateway.auth import KeyRing
from gateway.live import LiveView
from gateway.ratelimit import RateLimiter
from gateway.server import bind_socket
from runtime.types import LanguageInfo
from streams.settings import Settings


class MemorySink:
    def __init__(self, reachable: bool) -> None:
        self.sent: list[tuple[str, bytes, str]] = []
        self._reachable = reachable

    async def send(self, topic: str, value: bytes, key: str, headers: list[tuple[str, bytes]] | None = None) -> None:
        if not self._reachable:
            raise ConnectionError("broker down")
        self.sent.append((topic, value, key))

    async def reachable(self) -> bool:
        return self._reachable


class NoLanguages:
    async def languages(self) -> list[LanguageInfo]:
        return [LanguageInfo("python", "", False, False)]


def _client(reachable: bool, view_ready: bool, **settings: int) -> tuple[httpx.AsyncClient, MemorySink]:
    sink = MemorySink(reachable)
    live = LiveView(Settings())
    if view_ready:
        live.ready.set()
    services = Services(
        settings=Settings(**settings),  # type: ignore[arg-type]
        sink=sink,
        live=live,
        languages=NoLanguages(),
        keys=KeyRing(),
        limiter=RateLimiter(per_min=600, burst=100),
        language_names=frozenset({"python"}),
    )
    transport = httpx.ASGITransport(app=build_app(services))
    return httpx.AsyncClient(transport=transport, base_url="http://gw"), sink


async def test_not_ready_while_kafka_is_unreachable_or_the_view_rebuilds() -> None:
    for reachable, view_ready, why in [(False, True, "Kafka is unreachable"), (True, False, "rebuilt")]:
        client, _ = _client(reachable, view_ready)
        async with client:
            response = await client.get("/readyz")
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "not_ready" and why in response.json()["error"]["message"]
            assert (await client.get("/healthz")).status_code == 200
    client, _ = _client(True, True)
    async with client:
        assert (await client.get("/readyz")).json() == {"status": "ready", "kafka": True, "view_ready": True}


async def test_an_unreachable_broker_is_503_with_the_error_shape() -> None:
    client, _ = _client(False, True)
    async with client:
        response = await client.post("/v1/executions", json={"language": "python", "code": "1"})
        assert response.status_code == 503 and response.json()["error"]["code"] == "kafka_unavailable"


async def test_bodies_above_the_limit_and_bad_wait_flags_are_refused() -> None:
    client, sink = _client(True, True, gateway_max_body_bytes=100)
    async with client:
        big = await client.post("/v1/executions", json={"language": "python", "code": "x" * 200})
        assert big.status_code == 413 and big.json()["error"]["code"] == "body_too_large"
        bad = await client.post("/v1/executions?wait=maybe", json={"language": "python", "code": "1"})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "wait"
        wrong_method = await client.delete("/v1/executions")
        assert wrong_method.status_code == 405 and wrong_method.json()["error"]["code"] == "method_not_allowed"
        ok = await client.post("/v1/executions", json={"language": "python", "code": "1", "id": "m-1"})
        # The request, and its copy on sandbox.submissions for re-judging.
        sent = sorted((topic, key) for topic, _, key in sink.sent)
        assert ok.status_code == 202 and sent == [("sandbox.requests", "m-1"), ("sandbox.submissions", "m-1")]
        languages = (await client.get("/v1/languages")).json()
        assert languages == [{"name": "python", "version": "unknown", "compiled": False}]


async def test_accepted_connections_have_tcp_nodelay() -> None:
    """A keep-alive client must not wait for its delayed ACK (~40 ms) between a response's parts."""
    listener = bind_socket("127.0.0.1", 0)
    listener.listen()
    accepted: list[int] = []

    def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(on_connection, sock=listener)
    try:
        _, writer = await asyncio.open_connection(*listener.getsockname())
        for _ in range(100):
            if accepted:
                break
            await asyncio.sleep(0.01)
        assert accepted and accepted[0] != 0
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
