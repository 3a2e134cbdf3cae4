"""The producer-side client: produce an ExecutionRequest, await its ExecutionResult.

async with SandboxClient(Settings.from_env()) as client:
    result = await client.run("python", "print('hello')")
    print(result.state, result.stdout)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from types import TracebackType
from typing import Any

from aiokafka import TopicPartition

from streams import kafka
from streams.codec import CodecError
from streams.records import CancelRequest, ExecutionRequest, ExecutionResult, RequestLimits
from streams.settings import Settings
from streams.topics import Topics


class SandboxClient:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        self._producer = kafka.producer(settings)
        self._consumer = kafka.consumer(settings, group_id=None, interactive=True)
        self._waiters: dict[str, asyncio.Future[ExecutionResult]] = {}
        self._seen: dict[str, ExecutionResult] = {}
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> SandboxClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.stop()

    async def start(self) -> None:
        await self._producer.start()
        await self._consumer.start()
        parts = await kafka.partitions_of(self._consumer, self.topics.results)
        tps = [TopicPartition(self.topics.results, p) for p in parts]
        self._consumer.assign(tps)
        # Results written before this client started are read too: the topic is compacted.
        await self._consumer.seek_to_beginning(*tps)
        self._reader = asyncio.create_task(self._read())

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._consumer.stop()
        await self._producer.stop()

    async def _read(self) -> None:
        async for record in self._consumer:
            try:
                result = ExecutionResult.decode(record.value or b"")
            except CodecError:
                continue
            self._seen[result.id] = result
            waiter = self._waiters.pop(result.id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(result)

    async def submit(self, request: ExecutionRequest) -> str:
        await self._producer.send_and_wait(self.topics.requests, request.encode(), key=request.id.encode())
        return request.id

    async def result(self, execution_id: str, timeout_s: float = 60.0) -> ExecutionResult:
        if execution_id in self._seen:
            return self._seen[execution_id]
        waiter = self._waiters.setdefault(execution_id, asyncio.get_running_loop().create_future())
        return await asyncio.wait_for(asyncio.shield(waiter), timeout_s)

    async def cancel(self, execution_id: str, reason: str | None = None) -> None:
        cancel = CancelRequest(execution_id=execution_id, requested_at_ms=time.time_ns() // 1_000_000, reason=reason)
        await self._producer.send_and_wait(self.topics.cancellations, cancel.encode(), key=execution_id.encode())

    async def run(self, language: str, code: str, *, timeout_s: float = 60.0, **fields: Any) -> ExecutionResult:
        """Submit one program and wait for its result."""
        request = new_request(language, code, **fields)
        await self.submit(request)
        return await self.result(request.id, timeout_s)


def new_request(language: str, code: str, **fields: Any) -> ExecutionRequest:
    limits = fields.pop("limits", None)
    if isinstance(limits, dict):
        limits = RequestLimits(**limits)
    return ExecutionRequest(
        id=fields.pop("id", None) or uuid.uuid4().hex,
        language=language,
        code=code,
        limits=limits or RequestLimits(),
        created_at_ms=time.time_ns() // 1_000_000,
        **fields,
    )
