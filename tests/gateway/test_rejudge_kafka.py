"""Re-judging (issue 23, point 6) through the gateway, the real broker, the real processors and real
bubblewrap sandboxes: a batch of 100 judged submissions re-judged with one changed test gives new
verdicts linked to the originals, run from the same code (same sha256), read back from
sandbox.submissions; a tenant deletes its own submission with a tombstone."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest

from gateway.auth import hash_key
from streams.records import ExecutionRequest
from streams.settings import Settings
from streams.topics import Topics
from tests.gateway.helpers import running_gateway
from tests.helpers import read_all, results_by_id

pytestmark = [pytest.mark.kafka, pytest.mark.sandbox]

WAIT_S = 400
ACME = {"Authorization": "Bearer key-acme"}
GLOBEX = {"Authorization": "Bearer key-globex"}
KEYS = f"acme:{hash_key('key-acme')},globex:{hash_key('key-globex')}"
TESTS = [{"stdin": "2\n", "expected_stdout": "4\n"}, {"stdin": "3\n", "expected_stdout": "6\n"}]
# The second test changed: for n = 2, n + 2 == 2 * n, so the wrong solutions pass it too.
CHANGED = [TESTS[0], {"stdin": "2\n", "expected_stdout": "4\n"}]


def solution(i: int) -> str:
    # Every third one adds 2 instead of doubling: right on the first case, wrong on the second.
    op = "+ 2" if i % 3 == 0 else "* 2"
    return f"# submission {i}\nprint(int(input()) {op})\n"


async def finished(gw: Any, batch_id: str) -> dict[str, Any]:
    async with asyncio.timeout(WAIT_S):
        while True:
            got = await gw.client.get(f"/v1/batches/{batch_id}", headers=ACME)
            assert got.status_code == 200, got.text
            batch: dict[str, Any] = got.json()
            if batch["done"]:
                return batch
            await asyncio.sleep(0.5)


async def test_rejudging_a_batch_with_one_changed_test(pipeline: Settings) -> None:
    items = [{"language": "python", "code": solution(i), "tests": TESTS} for i in range(100)]
    wrong = {f"contest-{i}" for i in range(100) if i % 3 == 0}
    async with running_gateway(
        pipeline, api_keys=KEYS, webhook_secret="rejudge-test-secret", rate_limit_per_min=6000, rate_limit_burst=600
    ) as gw:
        posted = await gw.client.post("/v1/batches", json={"executions": items, "id": "contest"}, headers=ACME)
        assert posted.status_code == 202, posted.text
        before = await finished(gw, "contest")
        assert before["counts"] == {"FAILED": len(wrong), "SUCCEEDED": 100 - len(wrong)}
        assert {m["id"] for m in before["executions"] if m["passed"] == 1} == wrong

        # Another tenant cannot re-judge it; a re-judge must change something; bad cases name the field.
        other = await gw.client.post("/v1/rejudge", json={"batch_id": "contest", "tests": CHANGED}, headers=GLOBEX)
        assert other.status_code == 404 and other.json()["error"]["field"] == "batch_id"
        same = await gw.client.post("/v1/rejudge", json={"batch_id": "contest"}, headers=ACME)
        assert same.status_code == 422 and same.json()["error"]["field"] == "tests"
        bad = await gw.client.post("/v1/rejudge", json={"batch_id": "contest", "tests": [{"stdin": 1}]}, headers=ACME)
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "tests[0].stdin"

        again = await gw.client.post(
            "/v1/rejudge", json={"batch_id": "contest", "tests": CHANGED, "id": "contest-r1"}, headers=ACME
        )
        assert again.status_code == 202, again.text
        links = {e["id"]: e["rejudge_of"] for e in again.json()["executions"]}
        assert sorted(links.values()) == sorted(f"contest-{i}" for i in range(100))
        after = await finished(gw, "contest-r1")
        assert after["counts"] == {"SUCCEEDED": 100}
        assert all((m["passed"], m["total"]) == (2, 2) for m in after["executions"])
        one = (await gw.client.get("/v1/executions/contest-r1-0", headers=ACME)).json()
        assert one["rejudge_of"] == "contest-0" and one["batch_id"] == "contest-r1"
        assert one["provenance"]["code_sha256"] == hashlib.sha256(solution(0).encode()).hexdigest()

        # A tenant deletes its own submission: a tombstone; it cannot be re-judged any more.
        assert (await gw.client.delete("/v1/executions/contest-5/submission", headers=GLOBEX)).status_code == 404
        deleted = await gw.client.delete("/v1/executions/contest-5/submission", headers=ACME)
        assert deleted.status_code == 204
        gone = await gw.client.post(
            "/v1/rejudge", json={"executions": ["contest-4", "contest-5"], "tests": CHANGED}, headers=ACME
        )
        assert gone.status_code == 404 and gone.json()["error"]["field"] == "executions[1]"

    results = await results_by_id(pipeline)
    for new_id, original_id in links.items():
        (new,) = results[new_id]
        (original,) = results[original_id]
        assert new.rejudge_of == original_id and new.batch_id == "contest-r1"
        assert new.provenance is not None and original.provenance is not None
        assert new.provenance.code_sha256 == original.provenance.code_sha256
        assert new.judgement is not None and original.judgement is not None
        assert [c.verdict for c in new.judgement.cases] == ["ACCEPTED", "ACCEPTED"]
        expected = ["ACCEPTED", "WRONG_ANSWER"] if original_id in wrong else ["ACCEPTED", "ACCEPTED"]
        assert [c.verdict for c in original.judgement.cases] == expected
    submissions = await read_all(pipeline, Topics(pipeline.topic_prefix).submissions)
    tombstones = [r for r in submissions if r.key == b"contest-5" and r.value is None]
    assert len(tombstones) == 1
    kept = {r.key.decode(): ExecutionRequest.decode(r.value) for r in submissions if r.value is not None and r.key}
    assert kept["contest-r1-0"].rejudge_of == "contest-0" and kept["contest-0"].code == solution(0)
