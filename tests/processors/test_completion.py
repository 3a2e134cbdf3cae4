"""The completion stage alone, against the real broker: transactions only where there is output."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import replace

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from processors.completion import Completion
from processors.metrics import ProcessorMetrics
from streams import kafka
from streams.records import ExecutionEvent
from streams.settings import Settings
from streams.states import State
from streams.topics import Topics
from tests.helpers import eventually, results_by_id

pytestmark = [pytest.mark.kafka]


async def _committed(settings: Settings, group: str) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        return {tp: meta.offset for tp, meta in (await admin.list_consumer_group_offsets(group)).items()}
    finally:
        await admin.close()


async def _ends(settings: Settings, topic: str) -> dict[TopicPartition, int]:
    consumer = kafka.consumer(settings, group_id=None)
    await consumer.start()
    try:
        partitions = await kafka.partitions_of(consumer, topic)
        return dict(await consumer.end_offsets([TopicPartition(topic, p) for p in partitions]))
    finally:
        await consumer.stop()


async def test_events_without_output_commit_plainly_and_a_terminal_event_makes_one_result(settings: Settings) -> None:
    settings = replace(settings, worker_id=f"completion-test-{uuid.uuid4().hex[:8]}")
    topics = Topics(settings.topic_prefix)
    metrics = ProcessorMetrics()
    completion = Completion(settings, metrics=metrics)

    def commits(kind: str) -> float:
        return metrics.registry.get_sample_value("sandbox_completion_commits_total", {"kind": kind}) or 0.0

    task = asyncio.create_task(completion.run())
    producer = kafka.producer(settings)
    await producer.start()
    try:
        ids = [uuid.uuid4().hex for _ in range(6)]
        for execution_id in ids:  # the transitions before the end: nothing to produce for any of them
            for seq, state in enumerate((State.REQUESTED, State.VALIDATED, State.QUEUED, State.SCHEDULED)):
                event = ExecutionEvent(execution_id=execution_id, seq=seq, state=state, at_ms=1, tenant="t")
                await producer.send_and_wait(topics.events, event.encode(), key=event.key)
        events_end = await _ends(settings, topics.events)

        async def caught_up() -> bool:
            committed = await _committed(settings, completion.group_id)
            return all(committed.get(tp, -1) == end for tp, end in events_end.items() if end > 0)

        await eventually(caught_up, timeout_s=30)  # the group's lag is 0 ...
        assert commits("transaction") == 0 and commits("plain") >= 1  # ... without a single transaction
        assert await results_by_id(settings) == {}

        done = ExecutionEvent(execution_id=ids[0], seq=4, state=State.SUCCEEDED, at_ms=2, tenant="t")
        for _ in range(2):  # the same terminal event twice: still one result
            await producer.send_and_wait(topics.events, done.encode(), key=done.key)

        async def one_result() -> bool:
            return len((await results_by_id(settings)).get(ids[0], [])) == 1

        await eventually(one_result, timeout_s=30)
        events_end = await _ends(settings, topics.events)
        await eventually(caught_up, timeout_s=30)
        results = await results_by_id(settings)
        assert list(results) == [ids[0]] and results[ids[0]][0].state is State.SUCCEEDED
        assert 1 <= commits("transaction") <= 2  # the duplicate may share the first batch, or come alone
    finally:
        await producer.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
