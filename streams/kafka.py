"""Thin aiokafka edges shared by every process: producers, consumers, partitioning, dead letters."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.cluster import ClusterMetadata
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2
from aiokafka.protocol.metadata import MetadataRequest

from streams.settings import Settings
from streams.topics import MAX_MESSAGE_BYTES

TXN_RETRY_BACKOFF_MS = 10
IDLE_FETCH_MAX_WAIT_MS = 500  # aiokafka's default
BATCHED_FETCH_MIN_BYTES = 1024 * 1024  # a batched consumer's fetch is answered at this much, or its wait
TOPIC_SETTLE_S = 10.0  # how long a just-created topic may be missing from the broker's metadata


def partition_for(execution_id: str, partitions: int) -> int:
    """Kafka's default partitioner on the execution id, so every topic co-partitions by execution."""
    return int(murmur2(execution_id.encode()) & 0x7FFFFFFF) % partitions


def partition_among(execution_id: str, partitions: Iterable[int]) -> int:
    """The one of a topic's `partitions` (in any order; not empty) that holds the execution."""
    ordered = sorted(partitions)
    return ordered[partition_for(execution_id, len(ordered))]


def execution_partitioner(key_bytes: bytes, all_partitions: Sequence[int], available: Sequence[int]) -> int:
    """Partition by the execution id part of a key: "<id>:<seq>" and "<id>" go to the same partition."""
    return partition_among(key_bytes.decode(errors="replace").split(":", 1)[0], all_partitions)


def execution_partition(consumer: AIOKafkaConsumer, topic: str, execution_id: str) -> TopicPartition | None:
    """The partition of `topic` that holds the execution, by the consumer's metadata; None while unknown."""
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        return None
    return TopicPartition(topic, partition_among(execution_id, partitions))


def as_read(
    topic: str, key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]] | None
) -> ConsumerRecord[bytes, bytes]:
    """A record handed to a producer just now, as a consumer would read it (its partition and offset
    are not known yet: -1)."""
    return ConsumerRecord(
        topic=topic,
        partition=-1,
        offset=-1,
        timestamp=time.time_ns() // 1_000_000,
        timestamp_type=0,  # CreateTime, as our producers write
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key) if key is not None else -1,
        serialized_value_size=len(value) if value is not None else -1,
        headers=tuple(headers or ()),
    )


def producer(settings: Settings, *, transactional_id: str | None = None) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        partitioner=execution_partitioner,
        enable_idempotence=True,
        acks="all",
        linger_ms=settings.kafka_linger_ms,
        max_request_size=MAX_MESSAGE_BYTES,
        transactional_id=transactional_id,
        # A transaction begun right after the previous commit meets CONCURRENT_TRANSACTIONS until the
        # broker has written the markers; aiokafka retries after retry_backoff_ms (default 100 ms).
        retry_backoff_ms=TXN_RETRY_BACKOFF_MS if transactional_id is not None else 100,
        client_id=f"aevatar-{settings.executor_id}",
    )


def consumer(
    settings: Settings,
    *topics: str,
    group_id: str | None,
    from_beginning: bool = True,
    interactive: bool = False,
    transactional_input: bool = True,
    batch_wait_ms: int | None = None,
) -> AIOKafkaConsumer:
    """A read_committed consumer (read_uncommitted with `transactional_input=False`).

    `transactional_input=False` is for topics that only this platform writes, and never in a
    transaction (sandbox.launches; sandbox.events for the completion processor). Measured here: an
    executor's read_committed long poll (500 ms) sometimes answered ~350 ms after a launch landed,
    every few seconds; read_uncommitted, or a 20 ms wait, never did. Topics that outside producers
    write (requests, cancellations) and sandbox.results (written in transactions) stay read_committed.

    `interactive`: someone waits on what it reads (the client helper's results, a live log stream).
    Such a consumer fetches with the short `kafka_fetch_max_wait_ms`: the broker holds an empty fetch
    for that long, a read_committed fetch that arrives before a commit marker is answered only then,
    and every later request on the same connection (end offsets, say) queues behind it. The
    platform's own consumers keep aiokafka's 500 ms: an idle short-wait consumer costs the broker
    and itself ~50 fetches a second (measured: ~2% of a core in the platform and ~3% in the broker
    each), and the gateway's waiters are woken by the terminal event on sandbox.events, which is not
    transactional.

    `batch_wait_ms`: nobody waits on a single record (the webhook dispatcher: the idle fetch wait;
    the completion, whose results the express lane commits: 150 ms). The broker answers its fetch
    once `BATCHED_FETCH_MIN_BYTES` are there, or after that wait, so at any rate below a megabyte
    per wait it fetches once per wait, not once per record. Measured back to back (bench/README.md):
    a fetch and a commit per result cost the platform and the broker ~1.5 ms of CPU per run (the
    webhook dispatcher), the completion's two fetches per run ~0.8 ms of p50.
    """
    if batch_wait_ms is not None:
        wait_ms, min_bytes = batch_wait_ms, BATCHED_FETCH_MIN_BYTES
    else:
        wait_ms, min_bytes = (settings.kafka_fetch_max_wait_ms if interactive else IDLE_FETCH_MAX_WAIT_MS), 1
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=settings.bootstrap_servers,
        group_id=group_id,
        isolation_level="read_committed" if transactional_input else "read_uncommitted",
        fetch_max_wait_ms=wait_ms,
        fetch_min_bytes=min_bytes,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
        max_partition_fetch_bytes=MAX_MESSAGE_BYTES + 65536,
        fetch_max_bytes=4 * MAX_MESSAGE_BYTES,
    )


async def read_to_end(
    settings: Settings, topic: str, partitions: Sequence[int] | None = None, *, since_ms: int | None = None
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every committed record (read_committed) of the topic's partitions, from the start (or from the
    first record stamped `since_ms` or later) to the end as of now."""
    consumer_ = consumer(settings, group_id=None)
    await consumer_.start()
    try:
        if partitions is None:
            partitions = await partitions_of(consumer_, topic)
        tps = [TopicPartition(topic, p) for p in partitions]
        if not tps:
            return []
        consumer_.assign(tps)
        ends = await consumer_.end_offsets(tps)
        out: list[ConsumerRecord[bytes, bytes]] = []
        remaining = await seek_since(consumer_, tps, ends, since_ms)
        while remaining:
            batch = await consumer_.getmany(*remaining, timeout_ms=1000)
            for records in batch.values():
                out.extend(records)
            for tp in list(remaining):
                if await consumer_.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return out
    finally:
        await consumer_.stop()


async def seek_since(
    consumer_: AIOKafkaConsumer,
    tps: Iterable[TopicPartition],
    ends: dict[TopicPartition, int],
    since_ms: int | None,
) -> set[TopicPartition]:
    """Position the partitions at their start, or at their first record stamped `since_ms` or later
    (at the end when there is none); return those with records left to read up to `ends`."""
    tps = list(tps)
    if since_ms is None:
        await consumer_.seek_to_beginning(*tps)
        return {tp for tp in tps if ends[tp] > 0}
    found = await consumer_.offsets_for_times({tp: since_ms for tp in tps})
    behind: set[TopicPartition] = set()
    for tp in tps:
        at = found.get(tp)
        consumer_.seek(tp, at.offset if at is not None else ends[tp])
        if at is not None and at.offset < ends[tp]:
            behind.add(tp)
    return behind


async def latest_records(
    settings: Settings, topic: str, partitions: Iterable[int], *, since_ms: int | None = None
) -> dict[str, ConsumerRecord[bytes, bytes]]:
    """A compacted topic's current state on the given partitions: each key's last record (deleted keys
    left out); with `since_ms`, only keys written at or after it."""
    latest: dict[str, ConsumerRecord[bytes, bytes]] = {}
    for record in await read_to_end(settings, topic, sorted(partitions), since_ms=since_ms):
        if record.key is not None:
            latest[record.key.decode()] = record
    return {key: record for key, record in latest.items() if record.value is not None}


async def latest_by_key(
    settings: Settings, topic: str, partitions: Iterable[int], *, since_ms: int | None = None
) -> dict[str, bytes]:
    """Each key's last value on a compacted topic (see `latest_records`)."""
    records = await latest_records(settings, topic, partitions, since_ms=since_ms)
    return {key: record.value for key, record in records.items() if record.value is not None}


def _header_pairs(headers: Any) -> list[tuple[str, bytes]]:
    """A message's headers as pairs, whether the client gave a mapping or a sequence."""
    if not headers:
        return []
    return list(headers.items()) if hasattr(headers, "items") else list(headers)


async def partitions_by_topic(
    consumer: AIOKafkaConsumer, topics: Sequence[str], *, settle_s: float = TOPIC_SETTLE_S
) -> dict[str, list[int]]:
    """Each topic's partitions, from a metadata request for exactly these topics.

    aiokafka's public `topics()` fetches the metadata of *every* topic of the cluster into a
    throw-away object (slow on a broker with thousands of topics), and the consumer's own
    `partitions_for_topic` stays empty; this asks for the named topics only. A topic created a
    moment ago may not be in the broker's metadata yet: asked again for up to `settle_s`.
    """
    client = consumer._client
    deadline = time.monotonic() + settle_s
    while True:
        node = client.get_random_node()
        if node is None:
            raise KafkaError("no known broker to ask for topic metadata")
        cluster = ClusterMetadata()
        request = MetadataRequest(list(topics), allow_auto_topic_creation=False)
        cluster.update_metadata(await client.send(node, request))
        found = {topic: cluster.partitions_for_topic(topic) for topic in topics}
        missing = [topic for topic, parts in found.items() if not parts]
        if not missing:
            return {topic: sorted(parts or ()) for topic, parts in found.items()}
        if time.monotonic() >= deadline:
            raise LookupError(f"topic {missing[0]} does not exist (run `aevatar-sandbox topics create`)")
        await asyncio.sleep(0.1)


async def partitions_of(consumer: AIOKafkaConsumer, topic: str) -> list[int]:
    """The topic's partitions."""
    return (await partitions_by_topic(consumer, [topic]))[topic]


def deadletter_headers(message: Any, reason: str, stage: str) -> list[tuple[str, bytes]]:
    """Headers that carry the reason and the message's origin; the value stays the original bytes."""
    return [
        ("x-aevatar-reason", reason.encode()[:4000]),
        ("x-aevatar-stage", stage.encode()),
        ("x-aevatar-source-topic", message.topic.encode()),
        ("x-aevatar-source-partition", str(message.partition).encode()),
        ("x-aevatar-source-offset", str(message.offset).encode()),
        *[(k, v) for k, v in _header_pairs(message.headers)],
    ]
