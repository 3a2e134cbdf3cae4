"""Webhook deliveries from sandbox.results to a local receiver, through the real broker."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Sequence

import pytest

from gateway import signature
from streams.records import ExecutionResult
from streams.settings import Settings
from streams.states import State
from tests.gateway.helpers import Feeder, consume_values, result_for, running_gateway, webhook_receiver
from tests.helpers import read_all

pytestmark = pytest.mark.kafka

# The receivers listen on loopback: a development setup, which has to say so.
FAST = {
    "webhook_backoff_base_ms": 200,
    "webhook_backoff_cap_ms": 1000,
    "webhook_secret": "s3cret",
    "webhook_allow_private": True,
}


async def _wait_for(received: Sequence[object], count: int, timeout_s: float = 20) -> None:
    async with asyncio.timeout(timeout_s):
        while len(received) < count:
            await asyncio.sleep(0.05)


async def test_a_finished_run_is_delivered_signed(settings: Settings) -> None:
    async with webhook_receiver() as (url, received), running_gateway(settings, **FAST), Feeder(settings) as feed:
        await feed.result(result_for("hook-1", callback_url=url, stdout=b"hi\n"))
        await feed.result(result_for("no-hook", callback_url=None))
        await _wait_for(received, 1)
        (delivery,) = received
        header = delivery.headers["x-aevatar-signature"]
        assert signature.verify("s3cret", header, delivery.body, int(time.time()))
        assert not signature.verify("wrong", header, delivery.body, int(time.time()))
        assert not signature.verify("s3cret", header, delivery.body + b" ", int(time.time()))
        execution = json.loads(delivery.body)
        assert (execution["id"], execution["state"], execution["stdout"]) == ("hook-1", "SUCCEEDED", "hi\n")
        assert delivery.headers["x-aevatar-delivery"] == "hook-1"
        (record,) = await consume_values(settings, feed.topics.webhooks, 1)
        headers = dict(record.headers)
        assert headers["x-aevatar-outcome"] == b"delivered" and headers["x-aevatar-attempt"] == b"1"
        assert ExecutionResult.decode(record.value).id == "hook-1"
        await asyncio.sleep(0.5)
        assert len(received) == 1  # once, and nothing for the result without a callback


async def test_a_receiver_that_fails_twice_gets_it_on_the_third_attempt(settings: Settings) -> None:
    async with (
        webhook_receiver(fail_first=2) as (url, received),
        running_gateway(settings, **FAST),
        Feeder(settings) as feed,
    ):
        await feed.result(result_for("hook-2", State.FAILED, exit_code=1, callback_url=url))
        await _wait_for(received, 3)
        assert [r.headers["x-aevatar-attempt"] for r in received] == ["1", "2", "3"]
        gaps = [b.at_s - a.at_s for a, b in itertools.pairwise(received)]
        assert gaps[0] >= 0.15 and gaps[1] >= 0.35  # 200 ms, then 400 ms of backoff
        assert all(
            signature.verify("s3cret", r.headers["x-aevatar-signature"], r.body, int(time.time())) for r in received
        )
        records = await consume_values(settings, feed.topics.webhooks, 3)
        assert [dict(r.headers)["x-aevatar-outcome"] for r in records] == [b"retrying", b"retrying", b"delivered"]
        assert dict(records[0].headers)["x-aevatar-status"] == b"500"


async def test_a_dead_receiver_does_not_block_others_and_gives_up_at_the_cap(settings: Settings) -> None:
    async with (
        webhook_receiver(fail_first=1000) as (dead_url, dead),
        webhook_receiver() as (url, received),
        running_gateway(settings, webhook_max_attempts=3, **FAST),
        Feeder(settings) as feed,
    ):
        await feed.result(result_for("dead-1", callback_url=dead_url))
        await feed.result(result_for("live-1", callback_url=url))
        await _wait_for(received, 1, timeout_s=5)
        await _wait_for(dead, 3)
        await asyncio.sleep(1.0)
        assert len(dead) == 3
        records = await consume_values(settings, feed.topics.webhooks, 4)
        outcomes = {(r.key, dict(r.headers)["x-aevatar-outcome"]) for r in records}
        assert (b"dead-1", b"failed") in outcomes and (b"live-1", b"delivered") in outcomes


async def test_deliveries_in_flight_at_a_restart_are_not_lost(settings: Settings) -> None:
    async with webhook_receiver(fail_first=1) as (url, received), Feeder(settings) as feed:
        slow = {**FAST, "webhook_backoff_base_ms": 60_000}
        async with running_gateway(settings, **slow):
            await feed.result(result_for("restart-1", callback_url=url))
            await _wait_for(received, 1)  # failed once; the retry is a minute away when the gateway stops
        async with running_gateway(settings, **FAST):
            await _wait_for(received, 2)
        assert json.loads(received[-1].body)["id"] == "restart-1"
        async with running_gateway(settings, **FAST):
            await asyncio.sleep(1.5)
        assert len(received) == 2  # delivered, committed: a further restart does not send it again


async def test_a_callback_to_a_private_address_is_refused_at_once_and_recorded(settings: Settings) -> None:
    """A tenant's callback_url naming the host itself (or any non-public address) gets no request,
    and no retry: the address policy will not change between attempts."""
    defaults = {k: v for k, v in FAST.items() if k != "webhook_allow_private"}  # the default: public only
    async with (
        webhook_receiver() as (url, received),
        running_gateway(settings, webhook_max_attempts=3, **defaults),
        Feeder(settings) as feed,
    ):
        local_by_name = url.replace("127.0.0.1", "localhost")
        await feed.result(result_for("ssrf-1", callback_url=url))
        await feed.result(result_for("ssrf-2", callback_url=local_by_name))
        attempts = await consume_values(settings, settings.topic_prefix + "sandbox.webhooks", 2, timeout_s=30)
        await asyncio.sleep(1.0)  # a retry would come 200 ms later
        assert received == []  # nothing reached the receiver
        every = await read_all(settings, settings.topic_prefix + "sandbox.webhooks")
    recorded = [(r.key.decode(), {k: v.decode() for k, v in r.headers}) for r in attempts]
    assert len(every) == 2  # still only those two: no retry
    assert sorted((key, h["x-aevatar-attempt"], h["x-aevatar-outcome"]) for key, h in recorded) == [
        ("ssrf-1", "1", "failed"), ("ssrf-2", "1", "failed"),
    ]  # fmt: skip
    assert all("refused" in h["x-aevatar-error"] and "public" in h["x-aevatar-error"] for _, h in recorded)


async def test_a_callback_url_that_does_not_parse_is_recorded_as_a_failed_attempt(settings: Settings) -> None:
    """httpx raises InvalidURL (not an HTTPError) for "http://[::1/": still an attempt, recorded, not retried.

    The gateway refuses such a URL (422), but a result on the topic may carry one from any producer.
    """
    async with (
        webhook_receiver() as (url, received),
        running_gateway(settings, webhook_max_attempts=3, **FAST),
        Feeder(settings) as feed,
    ):
        await feed.result(result_for("bad-url-1", callback_url="http://[::1/"))
        await feed.result(result_for("good-url-1", callback_url=url))
        attempts = await consume_values(settings, feed.topics.webhooks, 2, timeout_s=30)
        await _wait_for(received, 1)
        await asyncio.sleep(1.0)  # a retry would come 200 ms later
        every = await read_all(settings, feed.topics.webhooks)
    recorded = {r.key.decode(): {k: v.decode() for k, v in r.headers} for r in attempts}
    assert set(recorded) == {"bad-url-1", "good-url-1"}
    bad = recorded["bad-url-1"]
    assert (bad["x-aevatar-attempt"], bad["x-aevatar-outcome"]) == ("1", "failed")
    assert bad["x-aevatar-error"].startswith("InvalidURL")
    assert recorded["good-url-1"]["x-aevatar-outcome"] == "delivered"
    assert len(every) == 2  # no retry of the URL that cannot parse
    assert [json.loads(r.body)["id"] for r in received] == ["good-url-1"]
