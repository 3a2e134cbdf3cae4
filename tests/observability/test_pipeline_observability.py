"""Metrics and traces through the real broker, real processors and real sandboxes.

One worker subprocess runs every processor role with its own /metrics port; the gateway runs
in the test. A few executions go through, then both /metrics endpoints are scraped and each
counter and histogram must have moved by exactly the number of executions that went through
it; and one trace id must be found from the HTTP request, in every processor's log lines and
Kafka headers, to the execution object.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

from processors.metrics import LagSampler, ProcessorMetrics
from streams import kafka
from streams.client import SandboxClient, new_request
from streams.settings import Settings
from streams.topics import Topics
from streams.tracing import TraceContext, from_headers
from tests.gateway.helpers import free_port, running_gateway
from tests.helpers import eventually, read_all
from tests.observability.helpers import json_lines, scrape, value

pytestmark = [pytest.mark.kafka, pytest.mark.sandbox]

RUN_TIMEOUT_S = 120
EXEC = "sandbox_executions_total"
STAGE = "sandbox_stage_duration_seconds_count"


def observed_worker(settings: Settings, start_worker: Any) -> tuple[Any, str]:
    port = free_port()
    worker = start_worker(settings, "all", env={"AEVATAR_METRICS_PORT": str(port), "AEVATAR_LAG_INTERVAL_MS": "500"})
    return worker, f"http://127.0.0.1:{port}/metrics"


async def run_and_wait(client: Any, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = await client.post("/v1/executions?wait=true", json=body, headers=headers, timeout=RUN_TIMEOUT_S + 10)
    assert response.status_code == 200, response.text
    execution: dict[str, Any] = response.json()
    return execution


async def test_every_process_exposes_metrics_that_move_by_the_right_amounts(
    settings: Settings, start_worker: Any
) -> None:
    worker, worker_metrics = observed_worker(settings, start_worker)
    async with running_gateway(settings, max_wait_ms=RUN_TIMEOUT_S * 1000) as gw:
        # Three that succeed and one that hits its wall-time limit, through the gateway.
        states = []
        for i in range(3):
            execution = await run_and_wait(gw.client, {"language": "python", "code": f"print({i})"})
            states.append(execution["state"])
        spin = {"language": "python", "code": "while True:\n    pass\n", "limits": {"wall_time_ms": 500}}
        states.append((await run_and_wait(gw.client, spin))["state"])
        assert states == ["SUCCEEDED", "SUCCEEDED", "SUCCEEDED", "LIMIT_EXCEEDED"]
        # One the static policy rejects (only a Kafka producer can send it: the gateway refuses it with 422),
        # and one undecodable message.
        async with SandboxClient(settings) as producer_client:
            rejected = await producer_client.run(
                "python", "print(1)", network=True, timeout_s=RUN_TIMEOUT_S, id="obs-rejected"
            )
            assert rejected.state.value == "REJECTED"
        poison = kafka.producer(settings)
        await poison.start()
        try:
            await poison.send_and_wait(Topics(settings.topic_prefix).requests, b"not avro", key=b"poison")
        finally:
            await poison.stop()

        async def worker_settled() -> bool:
            scraped = await scrape(worker_metrics)
            return value(scraped, EXEC, language="python", state="REJECTED") == 1 and (
                value(scraped, "sandbox_deadletter_messages_total", stage="validation") == 1
            )

        await eventually(worker_settled, timeout_s=60)
        w = await scrape(worker_metrics)
        g = await scrape(f"{gw.url}/metrics")

    # Executions by language and terminal state, counted once each.
    assert value(w, EXEC, language="python", state="SUCCEEDED") == 3
    assert value(w, EXEC, language="python", state="LIMIT_EXCEEDED") == 1
    assert value(w, EXEC, language="python", state="REJECTED") == 1
    assert value(w, "sandbox_limit_hits_total", kind="wall_time") == 1
    assert value(w, "sandbox_deadletter_messages_total", stage="validation") == 1
    # Stage latencies: every request is validated, completed and measured end to end; four were queued
    # and ran (the rejected one never was); python compiles nothing.
    assert value(w, STAGE, stage="validation") == 5
    assert value(w, STAGE, stage="completion") == 5
    assert value(w, STAGE, stage="end_to_end") == 5
    assert value(w, STAGE, stage="queue_wait") == 4
    assert value(w, STAGE, stage="run") == 4
    assert value(w, STAGE, stage="compile") == 0
    # The wall-time limit was 0.5 s, so the run stage's sum is at least that; and end to end covers the run.
    run_sum = value(w, "sandbox_stage_duration_seconds_sum", stage="run")
    assert run_sum >= 0.5
    assert value(w, "sandbox_stage_duration_seconds_sum", stage="end_to_end") >= run_sum
    assert value(w, "sandbox_stage_duration_seconds_bucket", stage="run", le="+Inf") == 4
    # Queue depth and running count per tenant: everything finished.
    assert value(w, "sandbox_queued_executions", tenant="default") == 0
    assert value(w, "sandbox_running_executions", tenant="default") == 0
    assert value(w, "sandbox_executor_runs") == 0
    # Consumer lag per topic and group: sampled for every group this worker runs, and caught up.
    prefix = settings.topic_prefix
    lag = {
        (dict(labels)["group"], dict(labels)["topic"])
        for (name, labels) in w
        if name == "sandbox_consumer_lag_messages"
    }
    assert (f"{prefix}aevatar-validation", f"{prefix}sandbox.requests") in lag
    assert (f"{prefix}aevatar-completion", f"{prefix}sandbox.events") in lag
    assert (f"{prefix}aevatar-launch", f"{prefix}sandbox.launches") in lag
    assert (f"{prefix}aevatar-scheduling", f"{prefix}sandbox.leases") in lag
    # The runtime's own registry is served by the worker too (compile cache: python never uses it).
    assert value(w, "sandbox_compile_cache_hits_total", language="python") == 0

    # The gateway: four accepted submissions, four answered POSTs, no webhook (none had a callback).
    assert value(g, "sandbox_submissions_total", outcome="accepted") == 4
    assert value(g, "sandbox_http_requests_total", route="/v1/executions", method="POST", status="2xx") == 4
    assert value(g, "sandbox_http_request_duration_seconds_count", route="/v1/executions") == 4
    assert value(g, "sandbox_webhook_deliveries_total", outcome="delivered") == 0
    assert worker.proc.poll() is None, worker.log()


async def test_consumer_lag_is_the_end_offset_minus_the_groups_committed_offset(settings: Settings) -> None:
    """Three records on one partition, a group that committed past the first: the lag is two."""
    topic = Topics(settings.topic_prefix).requests
    group = f"{settings.topic_prefix}lag-probe"
    producer = kafka.producer(settings)
    await producer.start()
    try:
        for _ in range(3):
            await producer.send_and_wait(topic, b"x", key=b"k", partition=0)
    finally:
        await producer.stop()
    member = kafka.consumer(settings, group_id=group)
    await member.start()
    try:
        member.assign([TopicPartition(topic, 0)])
        await member.commit({TopicPartition(topic, 0): OffsetAndMetadata(1, "")})
    finally:
        await member.stop()
    metrics = ProcessorMetrics()
    sampler = LagSampler(settings, {group: [topic]}, metrics)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    reader = kafka.consumer(settings, group_id=None)
    await admin.start()
    await reader.start()
    try:
        await sampler.sample(admin, reader)
    finally:
        await reader.stop()
        await admin.close()
    assert metrics.registry.get_sample_value("sandbox_consumer_lag_messages", {"topic": topic, "group": group}) == 2


async def test_one_trace_id_from_the_http_request_through_every_processor_to_the_result(
    settings: Settings, start_worker: Any
) -> None:
    worker, _ = observed_worker(settings, start_worker)
    caller = TraceContext.new()
    async with running_gateway(settings, max_wait_ms=RUN_TIMEOUT_S * 1000) as gw:
        execution = await run_and_wait(
            gw.client, {"language": "python", "code": "print('traced')"}, {"traceparent": caller.traceparent}
        )
        assert execution["state"] == "SUCCEEDED"
        # The execution object carries the trace id, also when read again later.
        assert execution["trace_id"] == caller.trace_id
        again = (await gw.client.get(f"/v1/executions/{execution['id']}")).json()
        assert again["trace_id"] == caller.trace_id
    execution_id = execution["id"]
    topics = Topics(settings.topic_prefix)

    # Every record about it on every topic carries a traceparent header in the caller's trace. (Its
    # launch is on sandbox.launches only if the executor did not take it in process: express.py.)
    for topic in (topics.requests, topics.events, topics.launches, topics.logs, topics.results):
        records = [r for r in await read_all(settings, topic) if r.key and r.key.decode().split(":")[0] == execution_id]
        assert records or topic == topics.launches, topic
        for record in records:
            found = from_headers(record.headers)
            assert found is not None and found.trace_id == caller.trace_id, (topic, record.headers)
            assert found.span_id != caller.span_id  # each stage adds its own span

    # Every processor's log lines about it carry the trace id, the execution id and the tenant.
    async def all_logged() -> bool:
        return {"validation", "scheduling", "launch", "completion"} <= stages_logged(worker.log(), execution_id)

    await eventually(all_logged, timeout_s=30)
    lines = [line for line in json_lines(worker.log()) if line.get("execution_id") == execution_id]
    assert lines
    for line in lines:
        assert line["trace_id"] == caller.trace_id, line
        assert line["tenant"] == "default", line


def stages_logged(log: str, execution_id: str) -> set[str]:
    stages = set()
    for line in json_lines(log):
        if line.get("execution_id") != execution_id:
            continue
        if line.get("event") == "transition":
            stages.add(str(line["stage"]))
        elif line.get("event") == "result":
            stages.add("completion")
    return stages


async def test_security_events_are_warnings_with_their_own_names(settings: Settings, start_worker: Any) -> None:
    worker, _ = observed_worker(settings, start_worker)
    async with SandboxClient(settings) as client:
        banned = await client.run("python", "import socket\n", network=True, timeout_s=RUN_TIMEOUT_S)
        spin = new_request("python", "while True:\n    pass\n", limits={"wall_time_ms": 300})
        await client.submit(spin)
        limited = await client.result(spin.id, RUN_TIMEOUT_S)
    assert (banned.state.value, limited.state.value) == ("REJECTED", "LIMIT_EXCEEDED")

    def found() -> dict[str, dict[str, object]]:
        lines = json_lines(worker.log())
        return {str(line["event"]): line for line in lines if str(line.get("event", "")).startswith("security_")}

    await eventually(lambda: {"security_policy_rejected", "security_limit_hit"} <= set(found()), timeout_s=30)
    events = found()
    assert events["security_policy_rejected"]["level"] == "warning"
    assert events["security_policy_rejected"]["code"] == "network_not_allowed"
    assert events["security_policy_rejected"]["execution_id"] == banned.id
    assert events["security_limit_hit"]["level"] == "warning"
    assert events["security_limit_hit"]["kind"] == "wall_time"
    assert events["security_limit_hit"]["execution_id"] == spin.id


async def test_a_worker_answers_its_health_probes(settings: Settings, start_worker: Any) -> None:
    """The worker's /healthz and /readyz, which the Kubernetes Deployments probe."""
    _, worker_metrics = observed_worker(settings, start_worker)
    base = worker_metrics.removesuffix("/metrics")

    async def answers(path: str) -> int:
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                return (await client.get(base + path)).status_code
        except httpx.TransportError:
            return 0

    async def ready() -> bool:
        return await answers("/readyz") == 200

    await eventually(ready, 90, 0.2)
    assert await answers("/healthz") == 200
