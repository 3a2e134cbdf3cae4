"""The gateway's HTTP API against the real broker, with pipeline records produced by the test itself."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from gateway.auth import hash_key
from streams.records import CancelRequest, ExecutionRequest, RunOutcome
from streams.settings import Settings
from streams.states import State
from tests.gateway.helpers import Feeder, consume_values, result_for, running_gateway

pytestmark = pytest.mark.kafka


def error_of(response: httpx.Response) -> dict[str, str | None]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "field"}
    detail: dict[str, str | None] = body["error"]
    return detail


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        (b"{not json", 400, "malformed_json", None),
        (b'{"language": "python", "code": 5}', 422, "invalid_type", "code"),
        (b'{"language": "python"}', 422, "missing_field", "code"),
        (
            b'{"language": "python", "code": "x", "limits": {"memory_mib": "lots"}}',
            422,
            "invalid_type",
            "limits.memory_mib",
        ),
        (b'{"language": "python", "code": "x", "colour": 1}', 422, "unknown_field", "colour"),
        (b'{"language": "cobol", "code": "x"}', 422, "unknown_language", "language"),
        (
            b'{"language": "python", "code": "x", "limits": {"memory_mib": 999999}}',
            422,
            "limit_above_maximum",
            "limits.memory_mib",
        ),
        (
            b'{"language": "python", "code": "x", "limits": {"wall_time_ms": 99999999}}',
            422,
            "limit_above_maximum",
            "limits.wall_time_ms",
        ),
        (b'{"language": "python", "code": "x", "id": "../etc"}', 422, "invalid_id", "id"),
        # httpx (the delivery's parser) cannot parse it: refused here, never dropped at delivery.
        (
            b'{"language": "python", "code": "x", "callback_url": "http://[::1/"}',
            422,
            "invalid_callback_url",
            "callback_url",
        ),
    ],
)
async def test_bad_bodies_are_refused_with_the_field_named(
    settings: Settings, body: bytes, status: int, code: str, field: str | None
) -> None:
    async with running_gateway(settings) as gw:
        response = await gw.client.post("/v1/executions", content=body, headers={"content-type": "application/json"})
        assert response.status_code == status, response.text
        detail = error_of(response)
        assert (detail["code"], detail["field"]) == (code, field)
        assert detail["message"]


async def test_submit_produces_the_request_and_the_view_follows_the_pipeline(settings: Settings) -> None:
    async with running_gateway(settings) as gw, Feeder(settings) as feed:
        response = await gw.client.post(
            "/v1/executions", json={"language": "python", "code": "print('hello')", "id": "exec-1"}
        )
        assert response.status_code == 202, response.text
        assert response.json() == {"id": "exec-1", "state": "REQUESTED"}
        (message,) = await consume_values(settings, feed.topics.requests, 1)
        assert message.key == b"exec-1"
        request = ExecutionRequest.decode(message.value)
        assert (request.id, request.language, request.code, request.tenant) == (
            "exec-1",
            "python",
            "print('hello')",
            "default",
        )
        assert request.created_at_ms > 0

        current = (await gw.client.get("/v1/executions/exec-1")).json()
        assert (
            current["state"] == "REQUESTED" and current["finished_at"] is None and current["created_at"].endswith("Z")
        )

        await feed.run_to("exec-1", State.SUCCEEDED, RunOutcome(exit_code=0, stdout=b"hello\n", run_ms=12))
        await asyncio.sleep(0)
        async with asyncio.timeout(10):
            while (await gw.client.get("/v1/executions/exec-1")).json()["state"] != "SUCCEEDED":
                await asyncio.sleep(0.05)
        from_events = (await gw.client.get("/v1/executions/exec-1")).json()
        assert from_events["stdout"] == "hello\n" and from_events["exit_code"] == 0
        assert from_events["timings"]["run_ms"] == 12 and from_events["finished_at"] is not None

        await feed.result(result_for("exec-1", stdout=b"hello\n", queued_ms=7, total_ms=1000))
        async with asyncio.timeout(10):
            while (await gw.client.get("/v1/executions/exec-1")).json()["timings"]["queued_ms"] != 7:
                await asyncio.sleep(0.05)
        final = (await gw.client.get("/v1/executions/exec-1")).json()
        assert set(final) >= {
            "id",
            "language",
            "state",
            "limit",
            "exit_code",
            "signal",
            "stdout",
            "stderr",
            "compile_output",
            "truncated",
            "timings",
            "usage",
            "attempts",
            "created_at",
            "finished_at",
        }
        assert final["truncated"] == {"stdout": False, "stderr": False}
        assert set(final["usage"]) == {"cpu_time_ms", "memory_peak_kib"}

        events = (await gw.client.get("/v1/executions/exec-1/events")).json()
        assert [e["state"] for e in events] == ["REQUESTED", "VALIDATED", "QUEUED", "SCHEDULED", "STARTED", "SUCCEEDED"]
        assert [e["seq"] for e in events] == list(range(6))

        again = await gw.client.post("/v1/executions", json={"language": "python", "code": "print(2)", "id": "exec-1"})
        assert again.status_code == 202 and again.json() == {"id": "exec-1", "state": "SUCCEEDED"}


async def test_wait_is_woken_by_the_terminal_event(settings: Settings) -> None:
    async with running_gateway(settings, max_wait_ms=20_000) as gw, Feeder(settings) as feed:
        post = asyncio.create_task(
            gw.client.post("/v1/executions?wait=true", json={"language": "python", "code": "print(1)", "id": "w-1"})
        )
        await consume_values(settings, feed.topics.requests, 1)
        assert not post.done()
        await feed.run_to("w-1", State.SUCCEEDED, RunOutcome(exit_code=0, stdout=b"hello\n"))
        response = await asyncio.wait_for(post, 15)
        assert response.status_code == 200, response.text
        assert (response.json()["state"], response.json()["stdout"]) == ("SUCCEEDED", "hello\n")


async def test_wait_answers_202_with_the_current_state_at_the_server_maximum(settings: Settings) -> None:
    async with running_gateway(settings, max_wait_ms=400) as gw, Feeder(settings) as feed:
        await feed.run_to("slow-1", State.STARTED)  # it exists and runs, and never ends
        async with asyncio.timeout(10):
            while (await gw.client.get("/v1/executions/slow-1")).status_code != 200:
                await asyncio.sleep(0.05)
        response = await gw.client.post(
            "/v1/executions?wait=true", json={"language": "python", "code": "print(1)", "id": "slow-1"}
        )
        assert response.status_code == 202
        assert response.json() == {"id": "slow-1", "state": "STARTED"}


async def test_unknown_ids_are_404_and_cancel_produces_a_cancel_request(settings: Settings) -> None:
    async with running_gateway(settings) as gw, Feeder(settings) as feed:
        for path in ["/v1/executions/nope", "/v1/executions/nope/events", "/v1/executions/nope/logs"]:
            response = await gw.client.get(path)
            assert response.status_code == 404 and error_of(response)["code"] == "not_found"
        assert (await gw.client.post("/v1/executions/nope/cancel")).status_code == 404
        unknown_route = await gw.client.get("/v2/whatever")
        assert unknown_route.status_code == 404 and error_of(unknown_route)["code"] == "not_found"

        await feed.run_to("c-1", State.QUEUED)
        async with asyncio.timeout(10):
            while (await gw.client.get("/v1/executions/c-1")).status_code != 200:
                await asyncio.sleep(0.05)
        response = await gw.client.post("/v1/executions/c-1/cancel")
        assert response.status_code == 202 and response.json() == {"id": "c-1", "state": "QUEUED"}
        (message,) = await consume_values(settings, feed.topics.cancellations, 1)
        assert message.key == b"c-1"
        assert CancelRequest.decode(message.value).execution_id == "c-1"


async def test_a_restarted_gateway_still_serves_an_old_execution(settings: Settings) -> None:
    async with Feeder(settings) as feed:
        await feed.run_to("old-1", State.FAILED, RunOutcome(exit_code=3, stderr=b"boom\n"))
        await feed.result(result_for("old-1", State.FAILED, exit_code=3, stdout=b"", stderr=b"boom\n"))
    for _ in range(2):  # a fresh process state each time: nothing but Kafka carries it over
        async with running_gateway(settings) as gw:
            old = (await gw.client.get("/v1/executions/old-1")).json()
            assert (old["state"], old["exit_code"], old["stderr"]) == ("FAILED", 3, "boom\n")
            assert len((await gw.client.get("/v1/executions/old-1/events")).json()) == 6


async def test_sse_delivers_chunks_as_they_come_and_resumes_from_last_event_id(settings: Settings) -> None:
    async with running_gateway(settings) as gw, Feeder(settings) as feed:
        await feed.run_to("log-1", State.STARTED)
        async with asyncio.timeout(10):
            while (await gw.client.get("/v1/executions/log-1")).status_code != 200:
                await asyncio.sleep(0.05)
        await feed.log("log-1", "stdout", 0, b"first\n")
        seen: list[tuple[str, str, str]] = []
        async with gw.client.stream("GET", "/v1/executions/log-1/logs") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            event = ident = ""
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("id:"):
                    ident = line.split(":", 1)[1].strip()
                elif line.startswith("data:"):
                    seen.append((event, ident, line.split(":", 1)[1].strip()))
                    if event == "stdout" and json.loads(seen[-1][2])["text"] == "first\n":
                        # Only now does the run go on: the chunk came before the end.
                        await feed.log("log-1", "stderr", 0, b"warn\n")
                        await feed.log("log-1", "stdout", 6, b"second\n")
                        await feed.event("log-1", 5, State.SUCCEEDED, outcome=RunOutcome(exit_code=0), attempt=1)
        kinds = [e for e, _, _ in seen]
        assert kinds[0] == "state" and kinds[-1] == "end"
        texts = [(e, json.loads(d)["text"]) for e, _, d in seen if e in {"stdout", "stderr"}]
        assert texts == [("stdout", "first\n"), ("stderr", "warn\n"), ("stdout", "second\n")]
        assert json.loads(seen[-1][2])["state"] == "SUCCEEDED"

        first_id = next(i for e, i, _ in seen if e == "stdout")
        resumed: list[tuple[str, str]] = []
        async with gw.client.stream(
            "GET", "/v1/executions/log-1/logs", headers={"Last-Event-ID": first_id}
        ) as response:
            event = ""
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event in {"stdout", "stderr"}:
                    resumed.append((event, json.loads(line.split(":", 1)[1])["text"]))
        assert resumed == [("stderr", "warn\n"), ("stdout", "second\n")]


async def test_api_keys_tenants_and_rate_limits(settings: Settings) -> None:
    keys = f"acme:{hash_key('key-acme')},globex:{hash_key('key-globex')}"
    async with running_gateway(
        settings, api_keys=keys, webhook_secret="api-test-secret", rate_limit_burst=3, rate_limit_per_min=6
    ) as gw:
        anonymous = await gw.client.get("/v1/languages")
        assert anonymous.status_code == 401 and error_of(anonymous)["code"] == "unauthorized"
        wrong = await gw.client.get("/v1/languages", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        acme = {"Authorization": "Bearer key-acme"}
        posted = await gw.client.post(
            "/v1/executions", json={"language": "python", "code": "1", "id": "t-1"}, headers=acme
        )
        assert posted.status_code == 202
        (message,) = await consume_values(settings, f"{settings.topic_prefix}sandbox.requests", 1)
        assert ExecutionRequest.decode(message.value).tenant == "acme"
        other = await gw.client.get("/v1/executions/t-1", headers={"Authorization": "Bearer key-globex"})
        assert other.status_code == 404  # another tenant's execution does not exist for them
        assert (await gw.client.get("/v1/executions/t-1", headers=acme)).status_code == 200
        statuses = [(await gw.client.get("/v1/executions/t-1", headers=acme)) for _ in range(3)]
        limited = statuses[-1]
        assert limited.status_code == 429, [s.status_code for s in statuses]
        assert int(limited.headers["Retry-After"]) >= 1 and error_of(limited)["code"] == "rate_limited"
        # Another key has its own bucket; health and metrics are not behind keys.
        assert (
            await gw.client.get("/v1/executions/t-1", headers={"Authorization": "Bearer key-globex"})
        ).status_code == 404
        assert (await gw.client.get("/healthz")).status_code == 200


async def test_languages_metrics_and_openapi(settings: Settings) -> None:
    async with running_gateway(settings) as gw:
        languages = (await gw.client.get("/v1/languages")).json()
        python = next(lang for lang in languages if lang["name"] == "python")
        assert python["compiled"] is False and python["version"].startswith("3.11")
        await gw.client.get("/v1/executions/none")
        metrics = await gw.client.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        assert 'sandbox_http_requests_total{method="GET",route="/v1/executions/{id}",status="4xx"} 1.0' in metrics.text
        assert "sandbox_view_executions" in metrics.text
        document = (await gw.client.get("/openapi.json")).json()
        assert document["openapi"].startswith("3.1")
        create = document["components"]["schemas"]["ExecutionCreate"]
        assert create["required"] == ["language", "code"] and create["additionalProperties"] is False
        assert set(document["paths"]) >= {"/v1/executions", "/v1/executions/{id}/logs", "/v1/languages", "/readyz"}


async def test_live_log_streams_are_bounded_per_tenant(settings: Settings) -> None:
    # Open (no keys), the one user may hold every slot (gateway.server.stream_slots): the bound is the total.
    bounds = {"sse_max_streams": 2, "sse_max_streams_per_tenant": 2}
    async with running_gateway(settings, **bounds) as gw, Feeder(settings) as feed:
        await feed.run_to("long-1", State.STARTED)  # runs, and does not end while the streams are open
        async with asyncio.timeout(10):
            while (await gw.client.get("/v1/executions/long-1")).status_code != 200:
                await asyncio.sleep(0.05)
        async with (
            gw.client.stream("GET", "/v1/executions/long-1/logs") as first,
            gw.client.stream("GET", "/v1/executions/long-1/logs") as second,
        ):
            assert first.status_code == second.status_code == 200
            async with gw.client.stream("GET", "/v1/executions/long-1/logs") as third:
                assert third.status_code == 429 and third.headers["retry-after"] == "5"
                await third.aread()
            assert error_of(third)["code"] == "too_many_streams"
        async with asyncio.timeout(10):  # the two ended: a new one is served
            while True:
                async with gw.client.stream("GET", "/v1/executions/long-1/logs") as again:
                    if again.status_code == 200:
                        break
                await asyncio.sleep(0.1)
