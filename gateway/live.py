"""The view kept live from Kafka: a consumer on sandbox.events and sandbox.results, without a group.

At start it reads both compacted topics from the beginning and is `ready` once it has caught
up with the end offsets it found, so a restarted gateway knows every old execution. Waiters
are woken by the folds themselves: one future per waiting request, resolved when its
execution changes. Nothing polls.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from gateway.audit import logger
from gateway.view import ExecutionRecord, View
from streams import kafka
from streams.codec import CodecError
from streams.records import ExecutionEvent, ExecutionResult
from streams.settings import Settings
from streams.topics import Topics
from streams.tracing import from_headers


class LiveView:
    def __init__(self, settings: Settings, view: View | None = None) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        self.view = view or View()
        self.ready = asyncio.Event()
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
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
                await asyncio.wait_for(asyncio.shield(changed), remaining)
            except TimeoutError:
                return self.view.get(execution_id) if not finished else None
            finally:
                self._discard(execution_id, changed)
            if not finished:
                return self.view.get(execution_id)

    def next_change(self, execution_id: str) -> asyncio.Future[None]:
        """A future resolved at the next change of this execution. Discard it with `forget` if unused."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(execution_id, []).append(future)
        return future

    def forget(self, execution_id: str, future: asyncio.Future[None]) -> None:
        self._discard(execution_id, future)

    def _discard(self, execution_id: str, future: asyncio.Future[None]) -> None:
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
    ) -> ExecutionRecord:
        record = self.view.submitted(
            execution_id,
            tenant=tenant,
            language=language,
            created_at_ms=created_at_ms,
            callback_url=callback_url,
            trace_id=trace_id,
        )
        self._notify(execution_id)
        return record

    def fold(self, message: ConsumerRecord[bytes, bytes]) -> bool:
        if message.value is None:
            return False
        try:
            if message.topic == self.topics.results:
                result = ExecutionResult.decode(message.value)
                changed, execution_id = self.view.fold_result(result), result.id
                self._trace_from_headers(execution_id, message)
            else:
                event = ExecutionEvent.decode(message.value)
                changed, execution_id = self.view.fold_event(event), event.execution_id
        except (CodecError, ValueError, msgspec.ValidationError) as exc:
            self.skipped += 1
            self._log.warning("undecodable record", topic=message.topic, offset=message.offset, error=str(exc))
            return False
        if changed:
            self._notify(execution_id)
        return changed

    def _trace_from_headers(self, execution_id: str, message: ConsumerRecord[bytes, bytes]) -> None:
        """A result carries its trace in its traceparent header (the record itself has no field for it)."""
        record = self.view.get(execution_id)
        if record is not None and record.trace_id is None:
            found = from_headers(message.headers)
            record.trace_id = found.trace_id if found is not None else None

    def _notify(self, execution_id: str) -> None:
        for future in self._waiters.pop(execution_id, []):
            if not future.done():
                future.set_result(None)

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
        ends = await consumer.end_offsets(list(assignment))
        behind = {tp for tp, end in ends.items() if end > 0}
        while behind:
            batch = await consumer.getmany(*behind, timeout_ms=500, max_records=2000)
            for records in batch.values():
                for message in records:
                    self.fold(message)
            for tp in list(behind):
                with contextlib.suppress(Exception):
                    if await consumer.position(tp) >= ends[tp]:
                        behind.discard(tp)
