"""Running a real gateway (uvicorn on a free port, the real broker) inside a test, and feeding it records."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any

import httpx

from gateway.server import gateway_url, serve
from streams import kafka
from streams.records import ExecutionEvent, ExecutionRequest, ExecutionResult, LogChunk, RunOutcome
from streams.settings import Settings
from streams.states import State
from streams.topics import Topics
from tests.helpers import free_port


@dataclass
class RunningGateway:
    settings: Settings
    url: str
    client: httpx.AsyncClient


@contextlib.asynccontextmanager
async def running_gateway(settings: Settings, **overrides: Any) -> AsyncIterator[RunningGateway]:
    """A gateway on a free port for the test's topics; stopped (cancelled) on exit."""
    s = replace(settings, gateway_host="127.0.0.1", gateway_port=free_port(), **overrides)
    ready = asyncio.Event()
    task = asyncio.create_task(serve(s, ready=ready))
    waiter = asyncio.create_task(ready.wait())
    done, _ = await asyncio.wait([task, waiter], timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        waiter.cancel()
        task.result()
    if waiter not in done:
        task.cancel()
        waiter.cancel()
        raise TimeoutError("the gateway did not become ready in 60 s")
    url = gateway_url(s)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            yield RunningGateway(s, url, client)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Feeder:
    """Produces fake-but-valid pipeline records to the real broker, as the processors would."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        self.producer = kafka.producer(settings)

    async def __aenter__(self) -> Feeder:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    async def event(
        self,
        execution_id: str,
        seq: int,
        state: State,
        *,
        request: ExecutionRequest | None = None,
        outcome: RunOutcome | None = None,
        attempt: int = 0,
        reason: str | None = None,
    ) -> None:
        event = ExecutionEvent(
            execution_id=execution_id,
            seq=seq,
            state=state,
            at_ms=int(time.time() * 1000),
            attempt=attempt,
            request=request.encode() if request is not None else None,
            outcome=outcome,
            reason=reason,
        )
        await self.producer.send_and_wait(self.topics.events, event.encode(), key=event.key)

    async def run_to(self, execution_id: str, final: State, outcome: RunOutcome | None = None, start: int = 0) -> None:
        """The usual path from `start` to `final`."""
        path = [State.REQUESTED, State.VALIDATED, State.QUEUED, State.SCHEDULED, State.STARTED, final]
        for seq, state in enumerate(path[start:], start):
            await self.event(
                execution_id,
                seq,
                state,
                attempt=1 if seq >= 4 else 0,
                outcome=outcome if state is final else None,
                request=ExecutionRequest(id=execution_id, language="python", code="print(1)", created_at_ms=1)
                if seq == 0
                else None,
            )

    async def result(self, result: ExecutionResult) -> None:
        await self.producer.send_and_wait(self.topics.results, result.encode(), key=result.id.encode())

    async def log(self, execution_id: str, stream: str, offset: int, data: bytes, attempt: int = 1) -> None:
        chunk = LogChunk(
            execution_id=execution_id,
            attempt=attempt,
            stream=stream,  # type: ignore[arg-type]
            offset=offset,
            data=data,
            at_ms=int(time.time() * 1000),
        )
        await self.producer.send_and_wait(self.topics.logs, chunk.encode(), key=execution_id.encode())


def result_for(execution_id: str, state: State = State.SUCCEEDED, **fields: Any) -> ExecutionResult:
    now = int(time.time() * 1000)
    values: dict[str, Any] = {
        "id": execution_id,
        "language": "python",
        "state": state,
        "exit_code": 0,
        "stdout": b"hello\n",
        "attempts": 1,
        "created_at_ms": now - 1000,
        "finished_at_ms": now,
        **fields,
    }
    return ExecutionResult(**values)


async def consume_values(settings: Settings, topic: str, count: int, timeout_s: float = 30) -> list[Any]:
    """The first `count` records of `topic` (from the beginning)."""
    consumer = kafka.consumer(settings, topic, group_id=None)
    await consumer.start()
    try:
        out: list[Any] = []
        async with asyncio.timeout(timeout_s):
            while len(out) < count:
                batch = await consumer.getmany(timeout_ms=300)
                for records in batch.values():
                    out.extend(records)
        return out
    finally:
        await consumer.stop()


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]
    at_s: float


@contextlib.asynccontextmanager
async def webhook_receiver(
    fail_first: int = 0, status_when_failing: int = 500, fail_while: Callable[[], bool] | None = None
) -> AsyncIterator[tuple[str, list[Received]]]:
    """A local HTTP receiver that records every delivery and fails the first `fail_first` ones (and
    every one while `fail_while()` is true)."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    received: list[Received] = []

    async def hook(request: Request) -> Response:
        received.append(Received(await request.body(), dict(request.headers), time.monotonic()))
        failing = len(received) <= fail_first or (fail_while is not None and fail_while())
        return Response(status_code=status_when_failing if failing else 204)

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            Starlette(routes=[Route("/hook", hook, methods=["POST"])]),
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
        )
    )
    task = asyncio.create_task(server._serve())
    async with asyncio.timeout(10):
        while not server.started:
            await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/hook", received
    finally:
        server.should_exit = True
        await task
