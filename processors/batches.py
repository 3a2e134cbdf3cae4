"""The shared edge of the processors that are plain aiokafka loops (validation, scheduling).

Each reads its consumer group's records in batches and hands every record to its own `handle`
without a wait for the broker in between: records are produced in call order, and the batch's
offsets are committed only once everything the batch produced is on the broker (a background
committer, in batch order). So a crash at any point redoes, at most, batches whose output may
already be there, and every input of these processors is idempotent.

Why not faust agents: under steady load faust handed an agent one record per several turns of
the shared event loop (its consumer thread, then its conductor per message); the scheduler idled
~75% of the time with hundreds of events behind it (bench/README.md, "Tuning notes").
"""

from __future__ import annotations

import abc
import asyncio
import collections
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from processors.metrics import ProcessorMetrics
from streams import kafka
from streams.codec import CodecError
from streams.records import R
from streams.settings import Settings
from streams.topics import Topics
from streams.tracing import TraceContext, Tracer

log = structlog.get_logger()
MAX_BATCH_RECORDS = 500
IDLE_POLL_MS = 500  # how long a poll waits for records before the loop comes round anyway


async def park(
    producer: AIOKafkaProducer,
    deadletter: str,
    record: ConsumerRecord[bytes, bytes],
    reason: str,
    stage: str,
    metrics: ProcessorMetrics,
) -> None:
    """Park a poison record on the dead-letter topic with its original bytes and key; the reason and
    its origin travel in headers. Returns once the broker has it."""
    headers = kafka.deadletter_headers(record, reason, stage)
    await (await producer.send(deadletter, record.value or b"", key=record.key, headers=headers))
    metrics.on_dead_letter(stage)
    log.warning("dead_letter", stage=stage, topic=record.topic, offset=record.offset, reason=reason)


class BatchProcessor(abc.ABC):
    """A consumer group's loop: `on_assigned`, then `handle` for each record, then `after_batch`."""

    stage: str = ""

    def __init__(
        self,
        settings: Settings,
        inputs: Sequence[str],
        *,
        metrics: ProcessorMetrics | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.settings = settings
        self.inputs = list(inputs)
        self.metrics = metrics or ProcessorMetrics()
        self.tracer = tracer or Tracer(f"aevatar-{self.stage}")
        self.topics = Topics(settings.topic_prefix)
        self.group_id = f"{settings.topic_prefix}aevatar-{self.stage}"
        self._assigned: frozenset[TopicPartition] | None = None
        self._sent: list[asyncio.Future[Any]] = []  # what the current batch produced
        self._to_commit: collections.deque[tuple[asyncio.Future[Any], dict[TopicPartition, OffsetAndMetadata]]] = (
            collections.deque()
        )
        self._commit_wanted = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        # A producer shared with the other stages of this process (processors/express.py), started
        # and stopped by whoever made it; None: this worker has its own.
        self.shared_producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        # One record at a time: the loop holds it for a whole batch, an express hand-off for its record.
        self._lock = asyncio.Lock()
        self._failed: Exception | None = None  # an express hand-off that failed: the loop stops with it

    # -- what a processor defines ---------------------------------------------------------------
    @abc.abstractmethod
    async def on_assigned(self, partitions: set[int]) -> None:
        """The group gave this worker these partitions (of its inputs): rebuild its state for them."""

    @abc.abstractmethod
    async def handle(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """One record of the inputs, in offset order within its partition."""

    @abc.abstractmethod
    async def after_batch(self) -> None:
        """Called after each poll, with or without records (timers go here)."""

    # -- the loop -------------------------------------------------------------------------------
    async def run(self) -> None:
        self._consumer = consumer = kafka.consumer(self.settings, group_id=self.group_id)
        consumer.subscribe(self.inputs)
        self._producer = self.shared_producer or kafka.producer(self.settings)
        if self.shared_producer is None:
            await self._producer.start()
        await consumer.start()
        committer = asyncio.create_task(self._commit_loop(consumer))
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=IDLE_POLL_MS, max_records=MAX_BATCH_RECORDS)
                if committer.done():
                    committer.result()  # a send failed for good: stop; the next owner redoes the batch
                if self._failed is not None:
                    raise self._failed
                async with self._lock:
                    await self._handle_batch(consumer, batch)
        finally:
            self._assigned = None  # no more express hand-offs
            committer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await committer
            await consumer.stop()
            if self.shared_producer is None:
                await self._producer.stop()

    async def _handle_batch(
        self, consumer: AIOKafkaConsumer, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> None:
        assignment = frozenset(consumer.assignment())
        if assignment != self._assigned:
            self._assigned = None  # no express hand-offs while the state is rebuilt
            await self._settle()
            await self.on_assigned({tp.partition for tp in assignment})
            self._assigned = assignment
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for tp, records in batch.items():
            for record in records:
                await self.handle(record)
            offsets[tp] = OffsetAndMetadata(records[-1].offset + 1, "")
        await self.after_batch()
        if offsets or self._sent:
            self._to_commit.append((asyncio.gather(*self._sent), offsets))
            self._sent = []
            self._commit_wanted.set()

    async def take_express(self, topic: str, execution_id: str, work: Callable[[], Awaitable[bool]]) -> bool:
        """Do `work` for a record handed over in process (processors/express.py), between batches, if
        this worker owns the record's partition of `topic`; `work` says whether it took the record
        (False: it had it already). False: not taken here; the record comes through the consumer.

        If the work fails, this worker stops as if its loop had failed, since its state may be
        half-changed; the next owner rebuilds it and reads the record from the broker.
        """
        async with self._lock:
            if self._failed is not None or not self.owns(topic, execution_id):
                return False
            try:
                took = await work()
            except Exception as exc:
                log.exception("express_failed", stage=self.stage, id=execution_id)
                self._failed = exc
                return False
            if took:
                self.metrics.express_handoffs.labels(self.stage).inc()
            return took

    def owns(self, topic: str, execution_id: str) -> bool:
        """Whether the consumer group gave this worker the partition of `topic` that holds the execution.

        False while the worker is not running or rebuilds its state for a new assignment.
        """
        if self._consumer is None or self._assigned is None:
            return False
        return kafka.execution_partition(self._consumer, topic, execution_id) in self._assigned

    async def _settle(self) -> None:
        """Wait until everything produced so far is on the broker (before state is read back)."""
        assert self._producer is not None
        await self._producer.flush()
        pending = self._sent + [done for done, _ in self._to_commit]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    # -- producing ------------------------------------------------------------------------------
    async def send(
        self,
        topic: str,
        key: bytes,
        value: bytes | None,
        *,
        trace: TraceContext | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]:
        """Hand one record (None: a tombstone) to the producer (in call order); its offsets commit only once it is sent.

        The returned future resolves once the broker has the record.
        """
        assert self._producer is not None
        if trace is not None:
            headers = trace.headers()
        delivered: asyncio.Future[Any] = await self._producer.send(topic, value, key=key, headers=headers)
        self._sent.append(delivered)
        return delivered

    def track(self, work: asyncio.Future[Any]) -> None:
        """Hold the current batch's commit until `work` is done too."""
        self._sent.append(work)

    async def decode(self, record: ConsumerRecord[bytes, bytes], kind: type[R]) -> R | None:
        """The record's value as `kind`, or None once an undecodable record is dead-lettered."""
        try:
            return kind.decode(record.value or b"")
        except CodecError as exc:
            await self.dead_letter(record, f"{type(exc).__name__}: {exc}")
            return None

    async def dead_letter(self, record: ConsumerRecord[bytes, bytes], reason: str) -> None:
        assert self._producer is not None
        await park(self._producer, self.topics.deadletter, record, reason, self.stage, self.metrics)

    # -- committing -----------------------------------------------------------------------------
    async def _commit_loop(self, consumer: AIOKafkaConsumer) -> None:
        """Commit each batch's offsets once everything it produced is on the broker, in batch order.

        A send that fails for good ends this loop with its error, and the processor's loop stops.
        """
        while True:
            await self._commit_wanted.wait()
            self._commit_wanted.clear()
            offsets: dict[TopicPartition, OffsetAndMetadata] = {}
            while self._to_commit:
                done, batch_offsets = self._to_commit[0]
                await done
                self._to_commit.popleft()
                offsets.update(batch_offsets)
            assigned = consumer.assignment()
            offsets = {tp: o for tp, o in offsets.items() if tp in assigned}
            if not offsets:
                continue
            try:
                await consumer.commit(offsets)
            except KafkaError as exc:  # a rebalance: the next owner redoes these (idempotently)
                log.info("commit_skipped", stage=self.stage, error=repr(exc))
