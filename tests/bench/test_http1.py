"""The bench's lean HTTP/1.1 client against a canned server on loopback."""

from __future__ import annotations

import asyncio

import pytest

from bench.http1 import Http1Client, HttpError


async def test_posts_read_sized_and_chunked_bodies_on_one_kept_alive_connection() -> None:
    connections: list[int] = []
    answers = [
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-type: application/json\r\n\r\n[1,2]",
        b'HTTP/1.1 202 Accepted\r\ntransfer-encoding: chunked\r\n\r\n3\r\n{"a\r\n3\r\n":1\r\n1\r\n}\r\n0\r\n\r\n',
    ]
    bodies: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        for answer in answers:
            head = await reader.readuntil(b"\r\n\r\n")
            size = int(next(x for x in head.split(b"\r\n") if x.lower().startswith(b"content-length")).split(b":")[1])
            bodies.append(await reader.readexactly(size))
            writer.write(answer)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = Http1Client(f"http://127.0.0.1:{port}")
    try:
        first = await client.post_json("/v1/executions?wait=true", b'{"x": 1}')
        second = await client.post_json("/v1/executions", b"{}")
    finally:
        await client.close()
        server.close()
    assert (first.status, first.body, first.headers["content-type"]) == (200, b"[1,2]", "application/json")
    assert (second.status, second.body) == (202, b'{"a":1}')
    assert bodies == [b'{"x": 1}', b"{}"] and len(connections) == 1


async def test_a_hang_up_or_a_refused_connection_is_an_http_error() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = Http1Client(f"http://127.0.0.1:{port}", timeout_s=5)
    with pytest.raises(HttpError):
        await client.post_json("/", b"{}")  # the server hangs up without an answer
    server.close()
    await server.wait_closed()
    with pytest.raises(HttpError):
        await client.post_json("/", b"{}")  # nobody listens any more


async def test_a_kept_alive_connection_the_server_closed_is_replaced_once() -> None:
    served: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served.append(1)
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(2)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()  # as an idle keep-alive connection is closed by the server's timeout

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = Http1Client(f"http://127.0.0.1:{port}", timeout_s=5)
    try:
        assert (await client.post_json("/", b"{}")).body == b"ok"
        await asyncio.sleep(0.05)
        assert (await client.post_json("/", b"{}")).body == b"ok"  # the stale one failed; a new one served
    finally:
        await client.close()
        server.close()
    assert len(served) == 2
