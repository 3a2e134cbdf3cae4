"""Against the real broker: Avro records round-trip, garbage is a typed error, topics are as declared."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streams import kafka
from streams.codec import BadMagic, CodecError, default_codec
from streams.records import ExecutionRequest, RequestLimits
from streams.settings import Settings
from streams.topics import CATALOG, Topics, create_topics, read_topic_configs

pytestmark = pytest.mark.kafka


async def _consume(settings: Settings, topic: str, count: int) -> list[bytes]:
    consumer = kafka.consumer(settings, topic, group_id=f"{settings.topic_prefix}test")
    await consumer.start()
    try:
        out: list[bytes] = []
        async with asyncio.timeout(30):
            while len(out) < count:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    out.extend(r.value for r in records if r.value is not None)
        return out
    finally:
        await consumer.stop()


async def test_requests_round_trip_byte_identical(settings: Settings) -> None:
    topics = Topics(settings.topic_prefix)
    sent = [
        ExecutionRequest(
            id=f"req-{i}",
            language="python",
            code=f"print({i})",
            stdin="in\x00put",
            args=["-v"],
            files={"a.txt": "é"},
            limits=RequestLimits(wall_time_ms=1000 + i),
            priority=i % 3,
            created_at_ms=1_700_000_000_000 + i,
        )
        for i in range(20)
    ]
    producer = kafka.producer(settings)
    await producer.start()
    try:
        for r in sent:
            await producer.send(topics.requests, r.encode(), key=r.id.encode())
        await producer.flush()
    finally:
        await producer.stop()
    received = await _consume(settings, topics.requests, len(sent))
    decoded = sorted((ExecutionRequest.decode(b) for b in received), key=lambda r: r.id)
    assert decoded == sorted(sent, key=lambda r: r.id)
    assert sorted(received) == sorted(r.encode() for r in sent)


async def test_garbage_bytes_raise_the_typed_error(settings: Settings) -> None:
    topics = Topics(settings.topic_prefix)
    producer = kafka.producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(topics.requests, b"\xde\xad\xbe\xef not avro", key=b"g")
    finally:
        await producer.stop()
    (raw,) = await _consume(settings, topics.requests, 1)
    with pytest.raises(BadMagic) as info:
        default_codec().decode(raw)
    assert isinstance(info.value, CodecError)


async def test_topics_create_twice_keeps_compaction_and_partitions(settings: Settings) -> None:
    # The fixture created them once already; a second run must change nothing.
    reports = await create_topics(settings)
    assert not any(r.created for r in reports)
    assert all(r.partitions == settings.partitions for r in reports)
    names = [spec.name(settings.topic_prefix) for spec in CATALOG]
    configs = await read_topic_configs(settings, names)
    for spec in CATALOG:
        got = configs[spec.name(settings.topic_prefix)]
        assert got["cleanup.policy"] == spec.for_settings(settings).configs()["cleanup.policy"]
        assert got["retention.ms"] == spec.for_settings(settings).configs()["retention.ms"]
        assert got["max.message.bytes"] == spec.configs()["max.message.bytes"]
    assert configs[f"{settings.topic_prefix}sandbox.events"]["cleanup.policy"] == "compact"
    # The seen ids are kept for the default dedupe window, then deleted by the broker.
    seen = configs[f"{settings.topic_prefix}aevatar-validation-seen-ids-changelog"]
    assert (seen["cleanup.policy"], seen["retention.ms"]) == ("compact,delete", str(settings.dedupe_window_s * 1000))


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("aevatar-sandbox")
    return subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, timeout=180, check=False)


async def test_topics_delete_removes_one_prefix_only_and_refuses_an_empty_one(settings: Settings) -> None:
    """What a killed test run leaves (its prefixed topics) goes; nothing outside the prefix does."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers}
    names = [spec.name(settings.topic_prefix) for spec in CATALOG]
    assert set(names) <= set(await read_topic_configs(settings, names))
    refused = await asyncio.to_thread(_cli, "topics", "delete", "", env=env)
    assert refused.returncode == 1 and "refusing an empty prefix" in refused.stderr
    done = await asyncio.to_thread(_cli, "topics", "delete", settings.topic_prefix, env=env)
    assert done.returncode == 0, done.stderr
    assert f"{len(CATALOG)} topic(s) with prefix {settings.topic_prefix!r} deleted" in done.stdout
    deleted = sorted(line.split()[1] for line in done.stdout.splitlines() if line.startswith("deleted "))
    assert deleted == sorted(names)
    again = await asyncio.to_thread(_cli, "topics", "delete", settings.topic_prefix, env=env)
    assert again.returncode == 0 and "0 topic(s)" in again.stdout


def test_kafka_cli_start_twice_status_stop(tmp_path: Path, kafka_settings: Settings) -> None:
    """A second managed broker on its own ports and data dir, driven only through the CLI."""
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    env.update(
        AEVATAR_KAFKA_PORT="19392",
        AEVATAR_KAFKA_CONTROLLER_PORT="19393",
        AEVATAR_DATA_DIR=str(tmp_path / "data"),
        AEVATAR_CACHE_DIR=str(kafka_settings.cache_dir),
        AEVATAR_KAFKA_HEAP_MIB="256",
    )
    first = _cli("kafka", "start", env=env)
    try:
        assert first.returncode == 0, first.stderr
        assert first.stdout.startswith("started:") and "127.0.0.1:19392" in first.stdout
        second = _cli("kafka", "start", env=env)
        assert second.returncode == 0 and second.stdout.startswith("already running:")
        status = _cli("kafka", "status", env=env)
        assert status.returncode == 0 and "accepting connections" in status.stdout
        assert (tmp_path / "data" / "kafka" / "logs" / "meta.properties").exists()
    finally:
        stop = _cli("kafka", "stop", env=env)
    assert stop.returncode == 0 and stop.stdout.strip() == "kafka stopped"
    after = _cli("kafka", "status", env=env)
    assert after.returncode == 1 and after.stdout.strip() == "kafka is not running"
    # Formatted once: a restart reuses the storage (a second format would fail).
    again = _cli("kafka", "start", env=env)
    _cli("kafka", "stop", env=env)
    assert again.returncode == 0, again.stderr


def test_missing_java_is_one_clear_line(tmp_path: Path) -> None:
    env = {
        "PATH": "/nonexistent",
        "HOME": str(tmp_path),
        "AEVATAR_KAFKA_PORT": "19394",
        "AEVATAR_KAFKA_CONTROLLER_PORT": "19395",
    }
    out = _cli("kafka", "start", env=env)
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0
    assert "`java` was not found" in out.stderr and "Traceback" not in out.stderr
