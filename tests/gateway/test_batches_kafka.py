"""Batches (issue 23, point 2) through the gateway, the real broker, the real processors and real
bubblewrap sandboxes: 100 executions in one POST, one result each, the batch's states and counts,
tenant ownership, and 422s naming the item's field."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest

from core.batches import MAX_BATCH_EXECUTIONS
from gateway.auth import hash_key
from streams.settings import Settings
from tests.gateway.helpers import running_gateway
from tests.helpers import results_by_id

pytestmark = [pytest.mark.kafka, pytest.mark.sandbox]

WAIT_S = 300
ACME = {"Authorization": "Bearer key-acme"}
GLOBEX = {"Authorization": "Bearer key-globex"}
KEYS = f"acme:{hash_key('key-acme')},globex:{hash_key('key-globex')}"


def item(i: int) -> dict[str, Any]:
    if i % 25 == 0:  # a few judged ones among the plain runs
        return {
            "language": "python",
            "code": "print(int(input()) * 2)",
            "tests": [{"stdin": f"{i}\n", "expected_stdout": f"{2 * i}\n"}, {"stdin": "1\n", "expected_stdout": "2\n"}],
        }
    return {"language": "python", "code": f"print({i})"}


def error_of(response: Any) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    return error


async def test_a_batch_of_100_completes_with_exactly_one_result_each(pipeline: Settings) -> None:
    items = [item(i) for i in range(100)]
    async with running_gateway(
        pipeline, api_keys=KEYS, webhook_secret="batch-test-secret", rate_limit_per_min=6000, rate_limit_burst=600
    ) as gw:
        posted = await gw.client.post("/v1/batches", json={"executions": items, "id": "contest-1"}, headers=ACME)
        assert posted.status_code == 202, posted.text
        accepted = posted.json()
        assert accepted["id"] == "contest-1"
        ids = [e["id"] for e in accepted["executions"]]
        assert ids == [f"contest-1-{i}" for i in range(100)] and len(set(ids)) == 100

        # Another tenant's batch (and its executions) do not exist for them.
        assert (await gw.client.get("/v1/batches/contest-1", headers=GLOBEX)).status_code == 404
        assert (await gw.client.get(f"/v1/executions/{ids[0]}", headers=GLOBEX)).status_code == 404
        taken = await gw.client.post("/v1/batches", json={"executions": items[:1], "id": "contest-1"}, headers=GLOBEX)
        assert taken.status_code == 409 and error_of(taken)["field"] == "id"

        async with asyncio.timeout(WAIT_S):
            while True:
                got = await gw.client.get("/v1/batches/contest-1", headers=ACME)
                assert got.status_code == 200, got.text
                batch = got.json()
                assert batch["total"] == 100 and sum(batch["counts"].values()) == 100
                if batch["done"]:
                    break
                await asyncio.sleep(0.5)
        assert batch["counts"] == {"SUCCEEDED": 100}, batch["counts"]
        assert [m["id"] for m in batch["executions"]] == ids
        judged = [m for m in batch["executions"] if m["total"] is not None]
        assert [(m["passed"], m["total"]) for m in judged] == [(2, 2)] * 4

        one = (await gw.client.get(f"/v1/executions/{ids[7]}", headers=ACME)).json()
        assert one["batch_id"] == "contest-1" and one["stdout"] == "7\n"

        # A retried POST of the same batch names the same executions and produces nothing new.
        again = await gw.client.post("/v1/batches", json={"executions": items, "id": "contest-1"}, headers=ACME)
        assert again.status_code == 202 and [e["id"] for e in again.json()["executions"]] == ids
        assert {e["state"] for e in again.json()["executions"]} == {"SUCCEEDED"}

    results = await results_by_id(pipeline)
    assert {i: len(results.get(i, [])) for i in ids} == dict.fromkeys(ids, 1)
    for i, execution_id in enumerate(ids):
        (result,) = results[execution_id]
        assert result.batch_id == "contest-1" and result.tenant == "acme"
        # Every result says what it was made from.
        p = result.provenance
        assert p is not None
        assert p.code_sha256 == hashlib.sha256(items[i]["code"].encode()).hexdigest()
        assert (p.toolchain, p.backend) == ("python", "local") and p.toolchain_version and p.executor
        assert p.limits is not None and p.limits.wall_time_ms > 0 and p.limits.memory_mib > 0


async def test_a_bad_batch_is_refused_whole_naming_the_item_and_field(settings: Settings) -> None:
    good = {"language": "python", "code": "print(1)"}
    async with running_gateway(settings) as gw:
        too_many = await gw.client.post("/v1/batches", json={"executions": [good] * (MAX_BATCH_EXECUTIONS + 1)})
        assert too_many.status_code == 422 and error_of(too_many)["field"] == "executions"
        assert error_of(too_many)["code"] == "too_many_executions"
        empty = await gw.client.post("/v1/batches", json={"executions": []})
        assert empty.status_code == 422 and error_of(empty)["field"] == "executions"

        unknown = [good, good, good, {"language": "cobol", "code": "x"}]
        refused = await gw.client.post("/v1/batches", json={"executions": unknown, "id": "bad-1"})
        assert refused.status_code == 422, refused.text
        assert (error_of(refused)["code"], error_of(refused)["field"]) == ("unknown_language", "executions[3].language")
        # Nothing of a refused batch was submitted.
        assert (await gw.client.get("/v1/batches/bad-1")).status_code == 404
        assert (await gw.client.get("/v1/executions/bad-1-0")).status_code == 404

        shapes = [good, good, {"language": "python", "code": "1", "limits": {"memory_mib": "lots"}}]
        wrong_type = await gw.client.post("/v1/batches", json={"executions": shapes})
        assert wrong_type.status_code == 422 and error_of(wrong_type)["field"] == "executions[2].limits.memory_mib"
        missing = await gw.client.post("/v1/batches", json={"executions": [good, {"code": "1"}]})
        assert missing.status_code == 422 and error_of(missing)["field"] == "executions[1].language"
        above = [good, {"language": "python", "code": "1", "limits": {"memory_mib": 10**6}}]
        over = await gw.client.post("/v1/batches", json={"executions": above})
        assert over.status_code == 422 and error_of(over)["field"] == "executions[1].limits.memory_mib"
        twice = await gw.client.post("/v1/batches", json={"executions": [{**good, "id": "x1"}, {**good, "id": "x1"}]})
        assert twice.status_code == 422 and error_of(twice)["field"] == "executions[1].id"
        bad_id = await gw.client.post("/v1/batches", json={"executions": [good], "id": "no spaces"})
        assert bad_id.status_code == 422 and error_of(bad_id)["field"] == "id"
