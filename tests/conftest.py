"""Shared fixtures: one real Kafka broker per test run, and a topic prefix per test."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import pytest

from streams.broker import ManagedBroker
from streams.settings import Settings
from streams.topics import create_topics


@pytest.fixture(scope="session")
def kafka_settings() -> Iterator[Settings]:
    """The broker the tests use: KAFKA_BOOTSTRAP_SERVERS if set, else the managed one, started once.

    A missing broker fails the run; it is never skipped.
    """
    settings = Settings.from_env()
    broker = ManagedBroker(settings)
    started = False
    if settings.managed_kafka:
        _, started = broker.start()
    yield settings
    if started and os.environ.get("AEVATAR_TEST_KEEP_KAFKA") != "1":
        broker.stop()


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
async def settings(kafka_settings: Settings, prefix: str) -> AsyncIterator[Settings]:
    """Settings with this test's own topic prefix; the catalog's topics exist."""
    s = replace(kafka_settings, topic_prefix=prefix, partitions=2)
    await asyncio.wait_for(create_topics(s), timeout=60)
    yield s
