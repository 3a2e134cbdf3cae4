"""The view kept live from Kafka: a consumer on sandbox.events and sandbox.results, without a group.

At start it reads the last `view_retention_s` of both topics and is `ready` once it has caught
up with the end offsets it found, so a restarted gateway knows every execution its view would
still hold. What the view keeps of finished executions is bounded (gateway/view.py, Retention);
it is pruned as executions finish and every PRUNE_INTERVAL_S. Waiters are woken by the folds
themselves: one future per waiting request, resolved with the execution's record when it
changes (so a waiter has its record even if the view drops it right after). Nothing polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from gateway.audit import logger
from gateway.view import ExecutionRecord, Retention, View
from streams import kafka
from streams.codec import CodecError
from streams.records import ExecutionEvent, ExecutionResult
from streams.settings import Settings
from streams.topics import Topics
from streams.tracing import from_headers

PRUNE_INTERVAL_S = 5.0
MIB = 1024 * 1024


def retention_of(settings: Settings) -> Retention:
    return Retention(
        max_age_ms=settings.view_retention_s * 1000,
        max_executions=settings.view_max_executions,
        max_output_bytes=settings.view_max_output_mib * MIB,
    )


class LiveView:
    def __init__(self, settings: Settings, view: View | None = None) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        self.view = view if view is not None else View(retention_of(settings))
        self.ready = asyncio.Event()
        self._waiters: dict[str, list[asyncio.Future[ExecutionRecord]]] = {}
        self._log = logger("aevatar.gateway.view")
        self.skipped = 0

    # -- reading --------------------------------------------------------------------------------
    def get(self, execution_id: str) -> ExecutionRecord | None:
        return self.view.get(execution_id)

    async def wait_for(self, execution_id: str, timeout_s: float, *, finished: bool = True) -> ExecutionRecord | None:
        """The record once it is finished (or, with finished=False, once it changes), or None at the timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            record = self.view.get(execution_id)
            if finished and record is not None and record.finished:
                return record
            remaining = deadline - loop.time()
            if remaining <= 0:
                return record if not finished else None
            changed = self.next_change(execution_id)
            try:
                record = await asyncio.wait_for(asyncio.shield(changed), remaining)
            except TimeoutError:
                return self.view.get(execution_id) if not finished else None
            finally:
                self._discard(execution_id, changed)
            if not finished or record.finished:
                return record  # even if the view has dropped it since

    def next_change(self, execution_id: str) -> asyncio.Future[ExecutionRecord]:
        """A future resolved with the record at the execution's next change. Discard it with `forget` if unused."""
        future: asyncio.Future[ExecutionRecord] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(execution_id, []).append(future)
        return future

    def forget(self, execution_id: str, future: asyncio.Future[ExecutionRecord]) -> None:
        self._discard(execution_id, future)

    def _discard(self, execution_id: str, future: asyncio.Future[ExecutionRecord]) -> None:
        waiters = self._waiters.get(execution_id)
        if waiters is not None and future in waiters:
            waiters.remove(future)
            if not waiters:
                del self._waiters[execution_id]
        if not future.done():
            future.cancel()

    def waiting(self) -> int:
        return sum(len(w) for w in self._waiters.values())

    # -- writing --------------------------------------------------------------------------------
    def submitted(
        self,
        execution_id: str,
        *,
        tenant: str,
        language: str,
        created_at_ms: int,
        callback_url: str | None,
        trace_id: str | None = None,
        batch_id: str | None = None,
        rejudge_of: str | None = None,
    ) -> ExecutionRecord:
        record = self.view.submitted(
            execution_id,
            tenant=tenant,
            language=language,
            created_at_ms=created_at_ms,
            callback_url=callback_url,
            trace_id=trace_id,
            batch_id=batch_id,
            rejudge_of=rejudge_of,
        )
        self._notify(execution_id, record)
        return record

    def fold(self, message: ConsumerRecord[bytes, bytes]) -> bool:
        if message.value is None:
            return False
        try:
            if message.topic == self.topics.results:
                result = ExecutionResult.decode(message.value)
                execution_id = result.id
                changed = self.view.fold_result(result)
                self._trace_from_headers(changed or self.view.get(execution_id), message)
            else:
                event = ExecutionEvent.decode(message.value)
                execution_id = event.execution_id
                changed = self.view.fold_event(event)
        except (CodecError, ValueError, msgspec.ValidationError) as exc:
            self.skipped += 1
            self._log.warning("undecodable record", topic=message.topic, offset=message.offset, error=str(exc))
            return False
        if changed is None:
            return False
        self._notify(execution_id, changed)
        return True

    def fold_written(self, event: ExecutionEvent) -> None:
        """A transition an executor in this process has just written (acknowledged): folded now,
        ahead of its copy from the consumer, which is then a duplicate (processors/express.py)."""
        changed = self.view.fold_event(event)
        if changed is not None:
            self._notify(event.execution_id, changed)

    def _trace_from_headers(self, record: ExecutionRecord | None, message: ConsumerRecord[bytes, bytes]) -> None:
        """A result carries its trace in its traceparent header (the record itself has no field for it)."""
        if record is not None and record.trace_id is None:
            found = from_headers(message.headers)
            record.trace_id = found.trace_id if found is not None else None

    def _notify(self, execution_id: str, record: ExecutionRecord) -> None:
        for future in self._waiters.pop(execution_id, []):
            if not future.done():
                future.set_result(record)

    # -- the consumer ---------------------------------------------------------------------------
    async def run(self) -> None:
        """Rebuild from the beginning, set `ready`, then follow both topics until cancelled.

        Two consumers: sandbox.events is never written in a transaction and is read as written
        (a read_committed long poll was seen answering ~350 ms after a record landed, and the
        waiters of `?wait=true` wake on the terminal event); sandbox.results is read_committed.
        """
        events = kafka.consumer(self.settings, self.topics.events, group_id=None, transactional_input=False)
        results = kafka.consumer(self.settings, self.topics.results, group_id=None)
        caught_up = [asyncio.Event(), asyncio.Event()]
        followers = [
            asyncio.create_task(self._follow(consumer, done))
            for consumer, done in zip((events, results), caught_up, strict=True)
        ]
        rebuilt: asyncio.Future[Any] = asyncio.ensure_future(asyncio.gather(*(e.wait() for e in caught_up)))
        followers.append(asyncio.create_task(self._prune_every(PRUNE_INTERVAL_S)))
        try:
            await asyncio.wait([rebuilt, *followers], return_when=asyncio.FIRST_COMPLETED)
            for task in followers:
                if task.done():
                    task.result()  # a follower failed before the view was rebuilt
            self.ready.set()
            self._log.info("view rebuilt", executions=len(self.view))
            await asyncio.gather(*followers)
        finally:
            every: list[asyncio.Future[Any]] = [rebuilt, *followers]
            for future in every:
                future.cancel()
            for future in every:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await future

    async def _prune_every(self, interval_s: float) -> None:
        """Drop finished executions past their age even when nothing new finishes."""
        while True:
            await asyncio.sleep(interval_s)
            dropped = self.view.prune(time.time_ns() // 1_000_000)
            if dropped:
                self._log.info("view pruned", dropped=dropped, executions=len(self.view))

    async def _follow(self, consumer: AIOKafkaConsumer, caught_up: asyncio.Event) -> None:
        try:
            await consumer.start()
            await self._catch_up(consumer)
            caught_up.set()
            while True:
                batch = await consumer.getmany(timeout_ms=1000, max_records=500)
                for records in batch.values():
                    for message in records:
                        self.fold(message)
        finally:
            await asyncio.shield(consumer.stop())

    async def _catch_up(self, consumer: AIOKafkaConsumer) -> None:
        assignment: set[TopicPartition] = set()
        while not assignment:
            assignment = consumer.assignment()
            if not assignment:
                await asyncio.sleep(0.05)  # the group-less subscription assigns on the first metadata update
        # Only what the view would still hold: from the first record of the retention window on.
        since_ms = time.time_ns() // 1_000_000 - self.view.retention.max_age_ms
        ends = await consumer.end_offsets(list(assignment))
        behind = await kafka.seek_since(consumer, assignment, ends, since_ms)
        while behind:
            batch = await consumer.getmany(*behind, timeout_ms=500, max_records=2000)
            for records in batch.values():
                for message in records:
                    self.fold(message)
            for tp in list(behind):
                with contextlib.suppress(Exception):
                    if await consumer.position(tp) >= ends[tp]:
                        behind.discard(tp)
