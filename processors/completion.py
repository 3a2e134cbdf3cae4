"""The completion processor: the first terminal transition of an execution → one ExecutionResult.

This stage must never duplicate its output, even when killed with -9, so it does not rest
on faust's exactly-once mode (see the streaming notes): it is an aiokafka
consume-transform-produce loop in Kafka transactions. The results and the consumed
offsets commit together; the set of completed ids is rebuilt from the compacted
results topic (read_committed) whenever partitions are assigned.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from processors.edges import now_ms
from processors.metrics import ProcessorMetrics
from processors.results import build_result
from processors.window import IdWindow, stale_reason
from streams import kafka
from streams.codec import CodecError
from streams.records import ExecutionEvent, ExecutionResult
from streams.settings import Settings
from streams.topics import Topics
from streams.tracing import Tracer, resolve

log = structlog.get_logger()
PLAIN_COMMIT_INTERVAL_S = 1.0


async def completed_ids(settings: Settings, partitions: Iterable[int]) -> dict[str, int]:
    """The execution ids with a committed result within the dedupe window on the given partitions of
    sandbox.results, with each result record's timestamp."""
    since_ms = now_ms() - settings.dedupe_window_s * 1000
    topic = Topics(settings.topic_prefix).results
    found = await kafka.latest_records(settings, topic, partitions, since_ms=since_ms)
    return {key: record.timestamp for key, record in found.items()}


class Completion:
    def __init__(
        self, settings: Settings, *, metrics: ProcessorMetrics | None = None, tracer: Tracer | None = None
    ) -> None:
        self.settings = settings
        self.metrics = metrics or ProcessorMetrics()
        self.tracer = tracer or Tracer("aevatar-completion")
        self.topics = Topics(settings.topic_prefix)
        self.group_id = f"{settings.topic_prefix}aevatar-completion"
        # The ids with a result, for the dedupe window (processors/window.py); a terminal event older
        # than the window is dead-lettered as stale instead of being looked up.
        self.done = IdWindow(settings.dedupe_window_s * 1000)
        self._rebuilt_for: frozenset[TopicPartition] = frozenset()
        # Offsets of batches that produced nothing (no terminal event, no dead letter): they need no
        # transaction. They ride along with the next transaction, or are committed plainly when idle
        # or after PLAIN_COMMIT_INTERVAL_S; losing them re-reads events that produce nothing.
        self._unsent_offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        self._last_commit = time.monotonic()

    async def run(self) -> None:
        # sandbox.events is never written in a transaction: read as written (a read_committed long
        # poll was seen answering ~350 ms late when records landed during it; see streams/kafka.py).
        consumer = kafka.consumer(self.settings, group_id=self.group_id, transactional_input=False)
        consumer.subscribe([self.topics.events])
        # A stable transactional id per worker identity: starting the producer fences the zombie of
        # this worker and settles its last transaction (committed or aborted) before anything is read,
        # so the rebuilt set of completed ids and the group's committed offsets agree.
        producer = kafka.producer(self.settings, transactional_id=f"{self.group_id}-{self.settings.worker_id}")
        await producer.start()
        await consumer.start()
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=500, max_records=200)
                await self._rebuild_if_reassigned(consumer)
                self.done.prune_due(now_ms())
                if batch:
                    await self._process(consumer, producer, batch)
                elif self._unsent_offsets:
                    await self._commit_plain(consumer)  # idle: let the group's lag reach 0
        finally:
            await consumer.stop()
            await producer.stop()

    async def _rebuild_if_reassigned(self, consumer: AIOKafkaConsumer) -> None:
        """Before a batch is processed under a new assignment, learn every result already committed.

        This runs in the processing loop itself, not in a rebalance callback, so no batch is ever
        processed with a set older than its assignment. Ids are only ever added: an id once
        completed stays completed.
        """
        assignment = frozenset(consumer.assignment())
        if assignment == self._rebuilt_for:
            return
        self.done.add_all(await completed_ids(self.settings, sorted({tp.partition for tp in assignment})), now_ms())
        self._rebuilt_for = assignment
        log.info("completion_assigned", partitions=sorted(tp.partition for tp in assignment), known=len(self.done))

    async def _process(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        batch: dict[TopicPartition, list],  # type: ignore[type-arg]
    ) -> None:
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        poison: list[tuple[ConsumerRecord[bytes, bytes], str]] = []
        terminal: list[tuple[ExecutionEvent, ConsumerRecord[bytes, bytes]]] = []
        now = now_ms()
        for tp, records in batch.items():
            for record in records:
                offsets[tp] = OffsetAndMetadata(record.offset + 1, "")
                try:
                    event = ExecutionEvent.decode(record.value or b"")
                except CodecError as exc:
                    poison.append((record, f"{type(exc).__name__}: {exc}"))
                    continue
                if not event.state.terminal or event.execution_id in self.done:
                    continue
                if self.done.stale(record.timestamp, now):
                    # Beyond the window its result may be forgotten here: a second one must not go out.
                    poison.append((record, stale_reason("terminal event", self.settings.dedupe_window_s)))
                    continue
                terminal.append((event, record))
        self._unsent_offsets.update(offsets)
        if not poison and not terminal:
            # Nothing to produce: most events (REQUESTED … STARTED) need no transaction at all.
            if time.monotonic() - self._last_commit >= PLAIN_COMMIT_INTERVAL_S:
                await self._commit_plain(consumer)
            return
        assigned = consumer.assignment()
        offsets = {tp: o for tp, o in self._unsent_offsets.items() if tp in assigned}
        newly_done: list[tuple[ExecutionResult, int, str]] = []
        pending: set[str] = set()
        async with producer.transaction():
            for record, reason in poison:
                await producer.send(
                    self.topics.deadletter,
                    record.value or b"",
                    key=record.key,
                    headers=kafka.deadletter_headers(record, reason, "completion"),
                )
            for event, record in terminal:
                if event.execution_id in pending:
                    continue
                try:
                    request = event.decoded_request()
                except CodecError:
                    request = None
                parent = resolve(record.headers, request.trace_id if request is not None else None)
                with self.tracer.span("completion", parent, execution_id=event.execution_id) as trace:
                    result = build_result(event, request)
                    await producer.send(
                        self.topics.results, result.encode(), key=result.id.encode(), headers=trace.headers()
                    )
                pending.add(event.execution_id)
                newly_done.append((result, event.at_ms, trace.trace_id))
            await producer.send_offsets_to_transaction(offsets, self.group_id)
        self.metrics.completion_commits.labels("transaction").inc()
        self._unsent_offsets.clear()
        self._last_commit = time.monotonic()
        parked = len(poison)
        # Known as completed only once the transaction committed: an aborted one leaves them to be redone.
        for execution_id in pending:
            self.done.add(execution_id, now)
        committed_ms = now_ms()
        # Counted once the transaction committed: an aborted batch is processed again and would count twice.
        for _ in range(parked):
            self.metrics.on_dead_letter("completion")
        for result, terminal_at_ms, trace_id in newly_done:
            self.metrics.on_result(result, (committed_ms - terminal_at_ms) / 1000)
            log.info(
                "result",
                id=result.id,
                state=result.state.value,
                execution_id=result.id,
                tenant=result.tenant,
                trace_id=trace_id,
            )

    async def _commit_plain(self, consumer: AIOKafkaConsumer) -> None:
        """Commit the offsets of batches that produced nothing, without a transaction."""
        assigned = consumer.assignment()
        offsets = {tp: o for tp, o in self._unsent_offsets.items() if tp in assigned}
        self._unsent_offsets.clear()
        self._last_commit = time.monotonic()
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
            self.metrics.completion_commits.labels("plain").inc()
        except KafkaError as exc:  # a rebalance: the next owner re-reads events that produce nothing
            log.info("completion_plain_commit_skipped", error=repr(exc))
