"""Webhook deliveries, driven from Kafka.

A consumer group on sandbox.results hands each result with a callback_url to its own task
(bounded concurrency, a timeout per attempt), which POSTs the execution object, signed, and
retries with capped exponential backoff. Every attempt is recorded on sandbox.webhooks. An
offset is committed only once every delivery at or below it is final, so a restarted gateway
redelivers what was in flight: delivery is at least once, and `X-Aevatar-Delivery` lets a
receiver drop repeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import httpx
import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from gateway import signature
from gateway.audit import logger
from gateway.egress import EgressRefused, webhook_client
from gateway.view import execution_from_result
from streams import kafka
from streams.codec import CodecError
from streams.offsets import OffsetTracker
from streams.records import ExecutionResult
from streams.settings import Settings
from streams.topics import Topics
from streams.tracing import TraceContext, from_headers

AttemptOutcome = Literal["delivered", "retrying", "failed"]
# Results older than this when first seen (a new consumer group reading history) are not delivered.
MAX_RESULT_AGE_MS = 24 * 3600 * 1000


def backoff_ms(attempt: int, *, base_ms: int, cap_ms: int) -> int:
    """The wait after failed attempt `attempt` (1-based): base, 2·base, 4·base, ... never above cap."""
    return int(min(cap_ms, base_ms * 2 ** max(0, attempt - 1)))


@dataclass(frozen=True, slots=True)
class Attempt:
    execution_id: str
    number: int
    outcome: AttemptOutcome
    status_code: int | None
    error: str | None
    duration_ms: int
    next_attempt_at_ms: int | None

    def headers(self) -> list[tuple[str, bytes]]:
        out = [
            ("x-aevatar-attempt", str(self.number).encode()),
            ("x-aevatar-outcome", self.outcome.encode()),
            ("x-aevatar-duration-ms", str(self.duration_ms).encode()),
        ]
        if self.status_code is not None:
            out.append(("x-aevatar-status", str(self.status_code).encode()))
        if self.error is not None:
            out.append(("x-aevatar-error", self.error.encode()[:2000]))
        if self.next_attempt_at_ms is not None:
            out.append(("x-aevatar-next-attempt-at-ms", str(self.next_attempt_at_ms).encode()))
        return out


OnAttempt = Callable[[Attempt], None]


def _now_ms() -> int:
    return int(time.time() * 1000)


class WebhookDispatcher:
    """Consumes sandbox.results in a consumer group and delivers each callback. Runs until cancelled."""

    def __init__(
        self,
        settings: Settings,
        producer: AIOKafkaProducer,
        *,
        on_attempt: OnAttempt | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        self.group_id = f"{settings.topic_prefix}aevatar-gateway-webhooks"
        self._producer = producer
        self._on_attempt = on_attempt
        self._http = http
        self._slots = asyncio.Semaphore(max(1, settings.webhook_concurrency))
        self._tracker: OffsetTracker[TopicPartition] = OffsetTracker()
        self._tasks: dict[asyncio.Task[None], TopicPartition] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._log = logger("aevatar.gateway.webhooks")
        self.started = asyncio.Event()

    async def run(self) -> None:
        # Batched: a callback is delivered up to one idle fetch wait (500 ms) after its result, and
        # results without one (most) no longer cost a fetch and a commit each.
        self._consumer = consumer = kafka.consumer(
            self.settings,
            group_id=self.group_id,
            from_beginning=True,
            batch_wait_ms=kafka.IDLE_FETCH_MAX_WAIT_MS,
        )
        consumer.subscribe([self.topics.results], listener=_Rebalance(self))
        own_http = self._http is None
        http = self._http or webhook_client(allow_private=self.settings.webhook_allow_private)
        try:
            await consumer.start()  # inside the try: a cancel during the group join still stops it
            self.started.set()
            while True:
                batch = await consumer.getmany(timeout_ms=500, max_records=100)
                for tp, records in batch.items():
                    for message in records:
                        if tp not in consumer.assignment():
                            break  # revoked while this batch was dispatched: its new owner delivers the rest
                        self._tracker.take(tp, message.offset)
                        trace = from_headers(message.headers)
                        await self._dispatch(http, tp, message.offset, message.value, trace)
                await self._commit(consumer)
        finally:
            for task in list(self._tasks):
                task.cancel()
            self._consumer = None
            await asyncio.gather(*self._tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.shield(self._commit(consumer))
            await asyncio.shield(consumer.stop())
            if own_http:
                await asyncio.shield(http.aclose())

    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions this dispatcher delivers now (empty while it is not in its group)."""
        return frozenset(self._consumer.assignment()) if self._consumer is not None else frozenset()

    async def _commit(self, consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition] | None = None) -> None:
        offsets = self._tracker.to_commit(consumer.assignment() if partitions is None else partitions)
        if offsets:
            await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()})
            self._tracker.committed(offsets)

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Partitions go to another dispatcher: stop their deliveries, commit what is final, forget them.

        A delivery stopped here is redone by the partition's new owner (from the committed offset):
        at least once, as after a restart. Forgetting matters when a partition comes back: its stale
        pending offsets would otherwise be committed below what the other owner committed meanwhile.
        """
        stopped = [task for task, tp in self._tasks.items() if tp in revoked]
        for task in stopped:
            task.cancel()
        await asyncio.gather(*stopped, return_exceptions=True)
        consumer = self._consumer
        if consumer is not None:
            try:
                await self._commit(consumer, revoked)
            except Exception as exc:  # the new owner starts from the last commit: redelivers, loses nothing
                self._log.warning("webhook commit on revoke failed", error=str(exc))
        for tp in revoked:
            self._tracker.forget(tp)
        if revoked:
            self._log.info("webhook partitions revoked", partitions=sorted(tp.partition for tp in revoked))

    async def _dispatch(
        self,
        http: httpx.AsyncClient,
        tp: TopicPartition,
        offset: int,
        value: bytes | None,
        trace: TraceContext | None = None,
    ) -> None:
        result = None
        if value is not None:
            try:
                result = ExecutionResult.decode(value)
            except (CodecError, ValueError, msgspec.ValidationError) as exc:
                self._log.warning("undecodable result", topic=tp.topic, offset=offset, error=str(exc))
        too_old = result is not None and result.finished_at_ms < _now_ms() - MAX_RESULT_AGE_MS
        if result is None or not result.callback_url or too_old or value is None:
            self._tracker.done(tp, offset)
            return
        await self._slots.acquire()
        task = asyncio.create_task(self._deliver(http, result, value, trace))
        self._tasks[task] = tp

        def finished(t: asyncio.Task[None]) -> None:
            self._tasks.pop(t, None)
            self._slots.release()
            if not t.cancelled():
                self._tracker.done(tp, offset)

        task.add_done_callback(finished)

    async def _deliver(
        self, http: httpx.AsyncClient, result: ExecutionResult, raw: bytes, trace: TraceContext | None = None
    ) -> None:
        assert result.callback_url is not None
        body = msgspec.json.encode(execution_from_result(result, trace.trace_id if trace is not None else None))
        timeout_s = self.settings.webhook_timeout_ms / 1000
        for number in range(1, max(1, self.settings.webhook_max_attempts) + 1):
            started = time.monotonic()
            timestamp = int(time.time())
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "aevatar-sandbox-webhooks/1",
                signature.HEADER: signature.sign(self.settings.webhook_secret, timestamp, body),
                "X-Aevatar-Delivery": result.id,
                "X-Aevatar-Attempt": str(number),
            }
            if trace is not None:
                headers["traceparent"] = trace.child().traceparent
            status: int | None = None
            error: str | None = None
            refused = False
            try:
                async with asyncio.timeout(timeout_s):
                    response = await http.post(result.callback_url, content=body, headers=headers, timeout=timeout_s)
                status = response.status_code
                if not 200 <= status < 300:
                    error = f"HTTP {status}"
            except Exception as exc:  # whatever the failure (httpx.InvalidURL is no HTTPError), it is an attempt
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                # The address policy, or a URL that does not parse: no retry helps.
                refused = isinstance(exc, httpx.InvalidURL) or isinstance(exc.__cause__, EgressRefused)
            duration_ms = int((time.monotonic() - started) * 1000)
            last = refused or number >= self.settings.webhook_max_attempts
            wait_ms = backoff_ms(
                number, base_ms=self.settings.webhook_backoff_base_ms, cap_ms=self.settings.webhook_backoff_cap_ms
            )
            outcome: AttemptOutcome = "delivered" if error is None else ("failed" if last else "retrying")
            attempt = Attempt(
                result.id,
                number,
                outcome,
                status,
                error,
                duration_ms,
                None if outcome != "retrying" else _now_ms() + wait_ms,
            )
            await self._record(attempt, raw)
            if outcome != "retrying":
                return
            await asyncio.sleep(wait_ms / 1000)

    async def _record(self, attempt: Attempt, raw: bytes) -> None:
        self._log.info(
            "webhook attempt",
            execution_id=attempt.execution_id,
            attempt=attempt.number,
            outcome=attempt.outcome,
            status=attempt.status_code,
            error=attempt.error,
        )
        if self._on_attempt is not None:
            self._on_attempt(attempt)
        try:
            await self._producer.send_and_wait(
                self.topics.webhooks, raw, key=attempt.execution_id.encode(), headers=attempt.headers()
            )
        except Exception as exc:  # the record is best effort; the delivery itself goes on
            self._log.warning("could not record webhook attempt", execution_id=attempt.execution_id, error=str(exc))


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, dispatcher: WebhookDispatcher) -> None:
        self.dispatcher = dispatcher

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self.dispatcher.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self.dispatcher._log.info("webhook partitions assigned", partitions=sorted(tp.partition for tp in assigned))
