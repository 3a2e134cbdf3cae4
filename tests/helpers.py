"""Test helpers: whole topics read from the real broker, waiting for a condition, a free port."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

from aiokafka import ConsumerRecord

from streams import kafka
from streams.records import ExecutionEvent, ExecutionResult
from streams.settings import Settings
from streams.topics import Topics


async def read_all(settings: Settings, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every committed record of a topic, from the beginning to its current end."""
    async with asyncio.timeout(60):
        return await kafka.read_to_end(settings, topic)


async def events_by_id(settings: Settings) -> dict[str, list[ExecutionEvent]]:
    out: dict[str, list[ExecutionEvent]] = {}
    for record in await read_all(settings, Topics(settings.topic_prefix).events):
        event = ExecutionEvent.decode(record.value)
        out.setdefault(event.execution_id, []).append(event)
    return out


async def results_by_id(settings: Settings) -> dict[str, list[ExecutionResult]]:
    out: dict[str, list[ExecutionResult]] = {}
    for record in await read_all(settings, Topics(settings.topic_prefix).results):
        result = ExecutionResult.decode(record.value)
        out.setdefault(result.id, []).append(result)
    return out


async def eventually(check: Callable[[], object], timeout_s: float = 60.0, interval_s: float = 0.5) -> None:
    """Wait until an async or sync check returns truthy."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(interval_s)


def free_port() -> int:
    """A TCP port nothing listens on right now (for servers a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
