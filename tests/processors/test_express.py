"""The express lane (processors/express.py) against the real broker and real bubblewrap sandboxes.

Stages that share a process hand records to each other in process; everything is still written to
Kafka, and a launch goes through sandbox.launches when no executor here can take it.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import httpx
import pytest

from streams.client import SandboxClient
from streams.records import ExecutionEvent
from streams.settings import Settings
from streams.states import State
from streams.topics import Topics
from tests.helpers import events_by_id, eventually, free_port, read_all, results_by_id

pytestmark = [pytest.mark.kafka, pytest.mark.sandbox]

EXPRESS_ENV = {"AEVATAR_SANDBOX_UID_BASE": "63400", "AEVATAR_SANDBOX_STATE_DIR": "/tmp/aevatar-express-tests"}
RUN_TIMEOUT_S = 120


def env(**extra: str) -> dict[str, str]:
    return {**EXPRESS_ENV, **{f"AEVATAR_{k.upper()}": v for k, v in extra.items()}}


def first_copies(events: list[ExecutionEvent]) -> list[ExecutionEvent]:
    """Each transition once, in log order (an executor writes a launch's SCHEDULED a second time)."""
    seen: set[int] = set()
    out = []
    for event in events:
        if event.seq not in seen:
            seen.add(event.seq)
            out.append(event)
    return out


def handoffs(metrics_text: str) -> dict[str, float]:
    found = re.findall(r'^sandbox_express_handoffs_total\{stage="(\w+)"\} ([0-9.e+]+)$', metrics_text, re.M)
    return {stage: float(value) for stage, value in found}


def completion_commits(metrics_text: str) -> dict[str, float]:
    found = re.findall(r'^sandbox_completion_commits_total\{kind="(\w+)"\} ([0-9.e+]+)$', metrics_text, re.M)
    return {kind: float(value) for kind, value in found}


async def launches_written(settings: Settings) -> int:
    return len(await read_all(settings, Topics(settings.topic_prefix).launches))


async def _when(value: Any, check: Any) -> bool:
    return bool(check(await value))


async def test_up_hands_each_request_through_in_process_and_writes_it_all(
    settings: Settings, start_worker: Any
) -> None:
    port, metrics_port = free_port(), free_port()
    start_worker(settings, command="up", env=env(gateway_port=str(port), metrics_port=str(metrics_port)))
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=RUN_TIMEOUT_S) as client:

        async def ready() -> bool:
            try:
                return (await client.get("/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(ready, timeout_s=RUN_TIMEOUT_S)
        ids = []
        for n in range(3):
            response = await client.post(
                "/v1/executions?wait=true", json={"language": "python", "code": f"print('express {n}')"}
            )
            assert response.status_code == 200, response.text
            execution = response.json()
            assert (execution["state"], execution["stdout"]) == ("SUCCEEDED", f"express {n}\n")
            ids.append(execution["id"])

        async def counted() -> dict[str, float]:
            return handoffs((await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text)

        # The completion commits its result after the answer went out (in a task of its own).
        await eventually(lambda: _when(counted(), lambda c: c.get("completion") == 3.0), timeout_s=RUN_TIMEOUT_S)
        # Every stage took each request in process: the gateway's request, the VALIDATED, the launch,
        # the terminal transition.
        assert await counted() == {"validation": 3.0, "scheduling": 3.0, "launch": 3.0, "completion": 3.0}
        # Each result was a plain write of its own; the loop, reading the terminal events later, had
        # nothing left to write in a transaction.
        commits = completion_commits((await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text)
        assert commits.get("express") == 3.0 and commits.get("transaction", 0.0) == 0.0, commits
    # No launch went through the topic; the audit trail is whole and in order; one result each.
    assert await launches_written(settings) == 0
    events = await events_by_id(settings)
    for execution_id in ids:
        states = [e.state for e in first_copies(events[execution_id])]
        assert states == [
            State.REQUESTED,
            State.VALIDATED,
            State.QUEUED,
            State.SCHEDULED,
            State.STARTED,
            State.SUCCEEDED,
        ], execution_id

    async def one_result_each() -> bool:
        results = await results_by_id(settings)
        return all(len(results.get(i, [])) == 1 for i in ids)

    await eventually(one_result_each, timeout_s=RUN_TIMEOUT_S)


async def test_with_express_off_every_launch_goes_through_the_topic(settings: Settings, start_worker: Any) -> None:
    start_worker(settings, "all", env=env(express="false"))
    async with SandboxClient(settings) as client:
        runs = (client.run("python", f"print({n})", timeout_s=RUN_TIMEOUT_S) for n in range(3))
        results = await asyncio.gather(*runs)
    assert sorted(r.stdout for r in results) == [b"0\n", b"1\n", b"2\n"]
    assert all(r.state is State.SUCCEEDED for r in results)
    assert await launches_written(settings) == 3


async def test_launches_beyond_the_free_slots_go_through_the_topic_and_run_once(
    settings: Settings, start_worker: Any
) -> None:
    # One slot, three runs scheduled at once: the first is taken in process, the others wait on the
    # topic until the slot is free again (the executor reads a launch again if the slot went meanwhile).
    start_worker(settings, "all", env=env(executor_slots="1", capacity="3", tenant_quota="3"))
    code = "import time\ntime.sleep(1)\nprint('slept')\n"
    ids = [f"slots-{uuid.uuid4().hex[:8]}-{n}" for n in range(3)]
    async with SandboxClient(settings) as client:
        results = await asyncio.gather(*(client.run("python", code, id=i, timeout_s=RUN_TIMEOUT_S) for i in ids))
    assert [(r.state, r.stdout) for r in results] == [(State.SUCCEEDED, b"slept\n")] * 3
    written = await launches_written(settings)
    assert 1 <= written <= 2  # at least the third went through the topic; at least the first did not
    events = await events_by_id(settings)
    for execution_id in ids:
        started = [e for e in first_copies(events[execution_id]) if e.state is State.STARTED]
        assert len(started) == 1 and started[0].attempt == 1, execution_id


async def _completion_lag(settings: Settings) -> int:
    """Terminal-or-not events the completion's group has not committed past (all partitions)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    topic = Topics(settings.topic_prefix).events
    probe = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=f"{settings.topic_prefix}aevatar-completion",
        enable_auto_commit=False,
    )
    await probe.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.partitions)]
        ends = await probe.end_offsets(partitions)
        lag = 0
        for tp in partitions:
            lag += ends[tp] - (await probe.committed(tp) or 0)
        return lag
    finally:
        await probe.stop()


async def test_express_results_stay_one_each_across_a_kill_9(settings: Settings, start_worker: Any) -> None:
    """The completion's express lane commits a result without the consumed offsets: killed right
    after, the restarted worker re-reads those terminal events and writes no second result."""
    metrics_port = free_port()
    first = start_worker(settings, "all", env=env(metrics_port=str(metrics_port)))
    async with SandboxClient(settings) as client:
        ids = []
        for n in range(4):  # one at a time: each result takes the express lane
            result = await client.run("python", f"print({n})", timeout_s=RUN_TIMEOUT_S)
            assert (result.state, result.stdout) == (State.SUCCEEDED, f"{n}\n".encode())
            ids.append(result.id)
        async with httpx.AsyncClient(timeout=10) as http:
            counted = handoffs((await http.get(f"http://127.0.0.1:{metrics_port}/metrics")).text)
        first.kill()
        assert counted.get("completion", 0) >= 1, counted
        # The crash left terminal events whose offsets were not committed: the restart reads them again.
        assert await _completion_lag(settings) > 0, "every offset was committed: nothing to test"
        start_worker(settings, "all", env=env())
        after = await client.run("python", "print('after')", timeout_s=RUN_TIMEOUT_S)
        assert after.stdout == b"after\n"
    ids.append(after.id)

    async def caught_up() -> bool:
        return await _completion_lag(settings) == 0

    await eventually(caught_up, timeout_s=RUN_TIMEOUT_S)
    counts = await results_by_id(settings)
    assert {i: len(counts.get(i, [])) for i in ids} == {i: 1 for i in ids}
