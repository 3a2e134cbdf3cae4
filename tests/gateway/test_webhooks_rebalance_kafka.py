"""Two webhook dispatchers in one consumer group while a partition moves (issue 29, point 1).

Real broker. Dispatcher A owns both partitions of sandbox.results and keeps failing to deliver one
result per partition (the receiver answers 500). Dispatcher B joins the group: one partition moves
to it. From then on, a delivery of a result is made by the owner of its partition only; the two
sign with different secrets, so the receiver can tell who sent each. Before the fix, A had no
rebalance listener and went on retrying the moved result.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import replace

import pytest

from gateway import signature
from gateway.webhooks import WebhookDispatcher
from streams import kafka
from streams.settings import Settings
from streams.topics import Topics
from tests.gateway.helpers import Received, result_for, webhook_receiver
from tests.helpers import eventually

pytestmark = pytest.mark.kafka

RETRYING = {
    "webhook_backoff_base_ms": 300,
    "webhook_backoff_cap_ms": 600,
    "webhook_max_attempts": 1000,
    "webhook_allow_private": True,
}


def _id(r: Received) -> str:
    execution_id: str = json.loads(r.body)["id"]
    return execution_id


def _signed_by(r: Received, secret: str) -> bool:
    return signature.verify(secret, r.headers["x-aevatar-signature"], r.body, int(time.time()))


async def test_a_moved_partition_is_delivered_by_its_new_owner_only(settings: Settings) -> None:
    failing = True
    producer = kafka.producer(settings)
    await producer.start()
    tasks: list[asyncio.Task[None]] = []
    try:
        async with webhook_receiver(fail_while=lambda: failing) as (url, received):
            a = WebhookDispatcher(replace(settings, webhook_secret="secret-a", **RETRYING), producer)  # type: ignore[arg-type]
            tasks.append(asyncio.create_task(a.run()))
            await eventually(lambda: len(a.assignment()) == 2, timeout_s=60, interval_s=0.05)
            topic = Topics(settings.topic_prefix).results
            for partition in (0, 1):
                result = result_for(f"move-{partition}", callback_url=url)
                await producer.send_and_wait(topic, result.encode(), key=result.id.encode(), partition=partition)
            await eventually(lambda: {_id(r) for r in received} == {"move-0", "move-1"}, timeout_s=30)

            b = WebhookDispatcher(replace(settings, webhook_secret="secret-b", **RETRYING), producer)  # type: ignore[arg-type]
            tasks.append(asyncio.create_task(b.run()))
            await eventually(
                lambda: len(a.assignment()) == 1 and len(b.assignment()) == 1, timeout_s=60, interval_s=0.05
            )
            settled_at = time.monotonic()
            (moved,) = b.assignment()
            (kept,) = a.assignment()
            owner = {f"move-{moved.partition}": "secret-b", f"move-{kept.partition}": "secret-a"}
            await asyncio.sleep(3)  # retries go on, failing, every 300-600 ms
            failing = False
            await eventually(
                lambda: all(any(_id(r) == eid and r.at_s > settled_at + 3 for r in received) for eid in owner),
                timeout_s=30,
            )
            await asyncio.sleep(1.5)  # a stray retry of the moved result would come within the cap
            after = [r for r in received if r.at_s > settled_at]
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await producer.stop()
    assert {_id(r) for r in after} == set(owner)  # both were redelivered after the move
    wrong = [(_id(r), r.headers["x-aevatar-attempt"]) for r in after if not _signed_by(r, owner[_id(r)])]
    assert wrong == [], "a dispatcher delivered a result of a partition it no longer owns"
