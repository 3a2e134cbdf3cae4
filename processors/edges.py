"""What every faust processor shares at its edge: producing events and dead letters, with their hooks.

Every record produced here carries its execution's W3C traceparent header, and every log line
made while a message is handled carries the execution id, tenant and trace id (`bound`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Iterator
from typing import Any

import faust
import structlog

from processors.metrics import ProcessorMetrics
from streams.app import raw_topic
from streams.codec import CodecError
from streams.kafka import deadletter_headers, partition_for
from streams.records import ExecutionEvent, R
from streams.settings import Settings
from streams.topics import Topics
from streams.tracing import TraceContext, Tracer

log = structlog.get_logger()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@contextlib.contextmanager
def bound(execution_id: str, tenant: str, trace: TraceContext | None) -> Iterator[None]:
    """Log lines inside carry the execution id, the tenant and the trace id (structlog contextvars)."""
    with structlog.contextvars.bound_contextvars(
        execution_id=execution_id, tenant=tenant, trace_id=trace.trace_id if trace is not None else None
    ):
        yield


def log_transition(stage: str, event: ExecutionEvent) -> None:
    """The log line of one transition a processor emits (inside `bound`, so it carries the ids)."""
    log.info("transition", stage=stage, id=event.execution_id, seq=event.seq, state=event.state.value)


class Edges:
    """The topics one faust app writes to, with the project's partitioning by execution id."""

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        stage: str,
        metrics: ProcessorMetrics | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.settings = settings
        self.stage = stage
        self.metrics = metrics or ProcessorMetrics()
        self.tracer = tracer or Tracer(f"aevatar-{stage}")
        self.names = Topics(settings.topic_prefix)
        self.events = raw_topic(app, self.names.events)
        self.launches = raw_topic(app, self.names.launches)
        self.deadletter = raw_topic(app, self.names.deadletter)
        self.logs = raw_topic(app, self.names.logs)
        self.leases = raw_topic(app, self.names.leases)

    def _partition(self, execution_id: str) -> int:
        return partition_for(execution_id, self.settings.partitions)

    async def emit(
        self, event: ExecutionEvent, *, trace: TraceContext | None = None, wait: bool = False
    ) -> Awaitable[Any]:
        """Put one transition on sandbox.events. `wait` returns only once the broker has it.

        The returned future resolves when the broker has it: transitions emitted one after the
        other without waiting go out in one batch (in order: same producer, same partition),
        and awaiting all their futures costs one round trip instead of one each.
        """
        fut = await self.events.send(
            key=event.key,
            value=event.encode(),
            partition=self._partition(event.execution_id),
            headers=trace.headers() if trace is not None else None,
        )
        with bound(event.execution_id, event.tenant, trace):
            log_transition(self.stage, event)
        if wait:
            await fut
        return fut

    async def send(
        self,
        topic: faust.TopicT,
        execution_id: str,
        value: bytes,
        *,
        trace: TraceContext | None = None,
        wait: bool = False,
    ) -> None:
        fut = await topic.send(
            key=execution_id.encode(),
            value=value,
            partition=self._partition(execution_id),
            headers=trace.headers() if trace is not None else None,
        )
        if wait:
            await fut

    async def decode(self, message: Any, record: type[R]) -> R | None:
        """The message's record, or None once an undecodable message is dead-lettered."""
        try:
            return record.decode(message.value or b"")
        except CodecError as exc:
            await self.dead_letter(message, f"{type(exc).__name__}: {exc}")
            return None

    async def dead_letter(self, message: Any, reason: str) -> None:
        """Park a poison message with its original bytes; the reason and origin travel in headers."""
        headers = deadletter_headers(message, reason, self.stage)
        fut = await self.deadletter.send(key=message.key, value=message.value or b"", headers=headers)
        await fut
        self.metrics.on_dead_letter(self.stage)
        log.warning("dead_letter", stage=self.stage, topic=message.topic, offset=message.offset, reason=reason)
