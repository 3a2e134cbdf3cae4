"""The faust App factory: one App (and so one consumer group) per processor role."""

from __future__ import annotations

import faust

from streams.settings import Settings
from streams.topics import MAX_MESSAGE_BYTES


def make_app(settings: Settings, role: str) -> faust.App:
    datadir = settings.data_dir / "faust" / f"{settings.topic_prefix}{role}"
    datadir.parent.mkdir(parents=True, exist_ok=True)
    return faust.App(
        f"{settings.topic_prefix}aevatar-{role}",
        broker=f"kafka://{settings.bootstrap_servers}",
        store="memory://",  # tables are rebuilt from their compacted changelog topics at start
        web_enabled=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        producer_max_request_size=MAX_MESSAGE_BYTES,
        consumer_max_fetch_size=MAX_MESSAGE_BYTES + 65536,
        producer_acks=-1,
        # A worker killed with -9 leaves the group after this long, and its partitions move on.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        broker_commit_every=100,
        broker_commit_interval=0.5,
        stream_wait_empty=False,
        table_cleanup_interval=60.0,
        datadir=str(datadir),
        key_serializer="raw",
        value_serializer="raw",
    )


def raw_topic(app: faust.App, name: str) -> faust.TopicT:
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
