"""The submissions topic at the gateway: what it records, reads back and deletes (issue 23, point 6).

sandbox.submissions is compacted and keyed by execution id: each submission's request (the same
Avro bytes as on sandbox.requests) stays there after the request topic's retention, so that a
re-judge runs the original code. The gateway records what it submits; a Kafka producer that wants
its requests re-judgeable writes them there too. A tenant deletes its own with a tombstone.
"""

from __future__ import annotations

from collections.abc import Iterable

from streams import kafka
from streams.codec import CodecError
from streams.records import ExecutionRequest
from streams.settings import Settings
from streams.topics import Topics


async def read_submissions(settings: Settings) -> dict[str, ExecutionRequest]:
    """Every submission still on the topic (deleted ones left out), by execution id."""
    consumer = kafka.consumer(settings, group_id=None)
    await consumer.start()
    try:
        topic = Topics(settings.topic_prefix).submissions
        partitions = await kafka.partitions_of(consumer, topic)
    finally:
        await consumer.stop()
    out: dict[str, ExecutionRequest] = {}
    for key, value in (await kafka.latest_by_key(settings, topic, partitions)).items():
        try:
            out[key] = ExecutionRequest.decode(value)
        except (CodecError, ValueError):
            continue  # not a request: nothing to re-judge from it
    return out


def of_batch(submissions: dict[str, ExecutionRequest], batch_id: str, order: Iterable[str]) -> list[ExecutionRequest]:
    """A batch's submissions: in the order the view knows its members, then the rest by creation."""
    members = [s for s in submissions.values() if s.batch_id == batch_id]
    rank = {execution_id: i for i, execution_id in enumerate(order)}
    return sorted(members, key=lambda s: (rank.get(s.id, len(rank)), s.created_at_ms, s.id))
