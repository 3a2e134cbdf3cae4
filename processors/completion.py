"""The completion processor: the first terminal transition of an execution → one ExecutionResult.

This stage must never duplicate its output, even when killed with -9, so it does not rest
on faust's exactly-once mode (see the streaming notes): it is an aiokafka
consume-transform-produce loop in Kafka transactions. The results and the consumed
offsets commit together; the set of completed ids is rebuilt from the compacted
results topic (read_committed) whenever partitions are assigned.

The express lane (processors/express.py): when the executor in this process has a terminal
transition on the broker, it hands it here at once (`express`) instead of this loop fetching it
back. Its result is then written at once, as a plain idempotent write (acks=all) of the producer
the stages here share, outside any transaction: one produce request, visible to read_committed
readers as soon as it is acknowledged (no AddPartitions, no EndTxn, no markers to wait for). The
event's copy comes through the consumer later and is skipped like any id already completed, and its
offset commits with the next batch's. A crash in between re-reads it, and the set of completed ids,
rebuilt from the results (read_committed reads plain writes too), skips it again. Only a transition
that is the execution's first terminal one is taken: the executor's own, acknowledged while the
lease of its STARTED still runs (by a margin for clocks that differ between hosts), since before
that lease runs out only the executor that holds a started run may end it (the scheduler ends or
retries a run only once its lease has run out).

What a plain write gives up against the transaction it replaced: a restarted worker's producer
fences its predecessor's unfinished transactions, not its plain writes. An express write whose
process is killed while it is in flight lands within the broker's handling of requests already
received (milliseconds) or never; the restarted worker rebuilds its completed ids only after its
start and group join (seconds). Neither way fenced a paused process of *another* worker whose
partition was reassigned meanwhile: the transactional id is per worker, and aiokafka sends no group
generation with its offsets.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

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
# How much sooner than the STARTED's lease an express hand-off must be: the clocks of the executor's
# host and the scheduler's may differ by less than this.
EXPRESS_LEASE_MARGIN_MS = 5_000
# Fed by an executor in this process, the completion's consumer fetches in batches: the broker
# answers at a megabyte or after this wait. The express lane commits the results of runs that end
# alone, at once; what the loop still commits (runs that ended while others ran here, runs longer
# than the lease margin allows, runs of other workers' executors) waits up to this much longer.
# Measured back to back: two fetches per run fewer, p50 ~0.8 ms less (bench/README.md).
EXPRESS_FED_FETCH_WAIT_MS = 150


async def completed_ids(settings: Settings, partitions: Iterable[int]) -> dict[str, int]:
    """The execution ids with a committed result within the dedupe window on the given partitions of
    sandbox.results, with each result record's timestamp."""
    since_ms = now_ms() - settings.dedupe_window_s * 1000
    topic = Topics(settings.topic_prefix).results
    found = await kafka.latest_records(settings, topic, partitions, since_ms=since_ms)
    return {key: record.timestamp for key, record in found.items()}


def first_terminal_for_sure(event: ExecutionEvent, now_ms: int, lease_ms: int) -> bool:
    """Whether an executor's terminal transition, on the broker by `now_ms`, is its execution's first
    terminal one: the run had STARTED, and the lease of its STARTED still runs by the margin.

    Until then the scheduler neither ends nor retries a started run; renewals only lengthen it.
    """
    if not event.state.terminal or event.started_at_ms is None:
        return False
    return now_ms < event.started_at_ms + lease_ms - EXPRESS_LEASE_MARGIN_MS


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
        # One transaction at a time: the loop holds this for a batch, an express hand-off for its event.
        self._lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._failed: Exception | None = None  # an express hand-off that failed: the loop stops with it
        # Set by processors/express.py's connect when an executor here hands it results: the producer
        # the stages here share, which writes those results.
        self.express_producer: AIOKafkaProducer | None = None

    async def run(self) -> None:
        # sandbox.events is never written in a transaction: read as written (a read_committed long
        # poll was seen answering ~350 ms late when records landed during it; see streams/kafka.py).
        consumer = kafka.consumer(
            self.settings,
            group_id=self.group_id,
            transactional_input=False,
            batch_wait_ms=EXPRESS_FED_FETCH_WAIT_MS if self.express_producer is not None else None,
        )
        consumer.subscribe([self.topics.events])
        # A stable transactional id per worker identity: starting the producer fences the zombie of
        # this worker and settles its last transaction (committed or aborted) before anything is read,
        # so the rebuilt set of completed ids and the group's committed offsets agree.
        producer = kafka.producer(self.settings, transactional_id=f"{self.group_id}-{self.settings.worker_id}")
        await producer.start()
        await consumer.start()
        self._consumer = consumer
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=500, max_records=200)
                async with self._lock:
                    if self._failed is not None:  # checked under the lock: an express failure may
                        raise self._failed  # have come while this batch waited for it
                    await self._rebuild_if_reassigned(consumer)
                    self.done.prune_due(now_ms())
                    if batch:
                        await self._process(consumer, producer, batch)
                    elif self._unsent_offsets:
                        await self._commit_plain(consumer)  # idle: let the group's lag reach 0
        finally:
            self._consumer = None  # no more express hand-offs
            await consumer.stop()
            await producer.stop()

    async def express(self, event: ExecutionEvent) -> bool:
        """A terminal transition the executor in this process has on the broker (see the module's
        docstring): its result written now, if it is the execution's first terminal one and this
        worker owns its partition. False: left to the loop, which reads it from the broker.

        A failed write stops this worker as if its loop had failed: whether it landed is not known,
        and the next start rebuilds the completed ids from the results.
        """
        if not first_terminal_for_sure(event, now_ms(), self.settings.lease_ms):
            return False
        async with self._lock:  # held until the write is acknowledged: the loop must see it completed
            consumer, producer = self._consumer, self.express_producer
            if consumer is None or producer is None or self._failed is not None:
                return False
            if event.execution_id in self.done or not self._owns(consumer, event.execution_id):
                return False
            try:
                done, delivered = await self._send_result(producer, event, None)
                await delivered
            except Exception as exc:
                log.exception("completion_express_failed", id=event.execution_id)
                self._failed = exc
                return False
            self.metrics.completion_commits.labels("express").inc()
            self.metrics.express_handoffs.labels("completion").inc()
            self._recorded([done], 0, now_ms())
            return True

    async def _send_result(
        self, producer: AIOKafkaProducer, event: ExecutionEvent, headers: Any
    ) -> tuple[tuple[ExecutionResult, int, str], asyncio.Future[Any]]:
        """Build a terminal transition's result and hand it to `producer` (within the loop's transaction,
        or as an express write), in a span that continues the event's trace (`headers`: the event
        record's, if it came through the consumer).

        Returns the result, its terminal's time and the trace id, for `_recorded` once committed, and
        the write's acknowledgement.
        """
        try:
            request = event.decoded_request()
        except CodecError:
            request = None
        parent = resolve(headers, request.trace_id if request is not None else None)
        with self.tracer.span("completion", parent, execution_id=event.execution_id) as trace:
            result = build_result(event, request)
            delivered = await producer.send(
                self.topics.results, result.encode(), key=result.id.encode(), headers=trace.headers()
            )
        return (result, event.at_ms, trace.trace_id), delivered

    def _owns(self, consumer: AIOKafkaConsumer, execution_id: str) -> bool:
        """Whether this worker's set of completed ids is the one for the partition that holds the execution."""
        assignment = frozenset(consumer.assignment())
        if assignment != self._rebuilt_for:
            return False  # not rebuilt for this assignment yet
        return kafka.execution_partition(consumer, self.topics.events, execution_id) in assignment

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
                pending.add(event.execution_id)
                done, _ = await self._send_result(producer, event, record.headers)  # the commit awaits it
                newly_done.append(done)
            await producer.send_offsets_to_transaction(offsets, self.group_id)
        self.metrics.completion_commits.labels("transaction").inc()
        self._unsent_offsets.clear()
        self._last_commit = time.monotonic()
        self._recorded(newly_done, len(poison), now)

    def _recorded(self, newly_done: list[tuple[ExecutionResult, int, str]], parked: int, now: int) -> None:
        """After a transaction committed: its results' ids are completed, and counted and logged.

        Known as completed only once the transaction committed: an aborted one leaves them to be
        redone, and counting them then would count them twice.
        """
        for result, _, _ in newly_done:
            self.done.add(result.id, now)
        committed_ms = now_ms()
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
