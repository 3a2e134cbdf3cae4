"""The official Judge0 Python SDK (`judge0` on PyPI), unchanged but for its base URL, against our
gateway with the real broker, the real processors and real sandboxes (issue 23, points 3 and 5)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import judge0
import pytest

from streams.settings import Settings
from tests.gateway.helpers import running_gateway

pytestmark = [pytest.mark.kafka, pytest.mark.sandbox]

RUN_TIMEOUT_S = 120
_T = TypeVar("_T")


async def _sdk(call: Callable[[], _T]) -> _T:
    # The SDK is synchronous (httpx.Client); the gateway runs on this loop, so the SDK gets a thread.
    async with asyncio.timeout(RUN_TIMEOUT_S):
        return await asyncio.to_thread(call)


async def test_the_judge0_sdk_runs_hello_stdin_wrong_answer_and_compile_error(pipeline: Settings) -> None:
    async with running_gateway(pipeline, max_wait_ms=RUN_TIMEOUT_S * 1000) as gw:
        client = await _sdk(lambda: judge0.Client(f"{gw.url}/judge0"))

        hello = await _sdk(lambda: judge0.run(client=client, source_code="print('hello')", language=judge0.PYTHON))
        assert (hello.status, hello.stdout) == (judge0.Status.ACCEPTED, "hello\n")

        echo = "import sys\nprint(sum(int(x) for x in sys.stdin.read().split()))\n"
        summed = await _sdk(lambda: judge0.run(client=client, source_code=echo, language=judge0.PYTHON, stdin="2 3 4"))
        assert (summed.status, summed.stdout) == (judge0.Status.ACCEPTED, "9\n")

        c_sum = '#include <stdio.h>\nint main(void){int a,b;scanf("%d %d",&a,&b);printf("%d\\n",a-b);return 0;}\n'
        wrong = await _sdk(
            lambda: judge0.run(client=client, source_code=c_sum, language=judge0.C, stdin="1 2", expected_output="3\n")
        )
        assert (wrong.status, wrong.stdout) == (judge0.Status.WRONG_ANSWER, "-1\n")
        right = await _sdk(
            lambda: judge0.run(client=client, source_code=c_sum, language=judge0.C, stdin="5 2", expected_output="3")
        )
        assert (right.status, right.stdout) == (judge0.Status.ACCEPTED, "3\n")

        broken = await _sdk(lambda: judge0.run(client=client, source_code="int main( {", language=judge0.CPP))
        assert broken.status == judge0.Status.COMPILATION_ERROR
        assert broken.compile_output and "error" in broken.compile_output

        # The token is the native execution's id: the same run, on the audit trail.
        native = (await gw.client.get(f"/v1/executions/{str(wrong.token).replace('-', '')}")).json()
        assert native["judgement"]["cases"][0]["verdict"] == "WRONG_ANSWER"


async def test_the_judge0_sdk_batch_and_its_fields(pipeline: Settings) -> None:
    async with running_gateway(pipeline, max_wait_ms=RUN_TIMEOUT_S * 1000) as gw:
        client = await _sdk(lambda: judge0.Client(f"{gw.url}/judge0"))
        submissions = [
            judge0.Submission(source_code=f"print({n} * {n})", language=judge0.PYTHON3) for n in range(3)
        ] + [judge0.Submission(source_code="import os\nos.kill(os.getpid(), 11)", language=judge0.PYTHON3)]
        done = await _sdk(lambda: judge0.run(client=client, submissions=submissions))
        assert [s.stdout for s in done[:3]] == ["0\n", "1\n", "4\n"]
        assert done[3].status == judge0.Status.RUNTIME_ERROR_SIGSEGV and done[3].exit_signal == 11
        fields = await gw.client.get(f"/judge0/submissions/{done[0].token}", params={"fields": "status,time"})
        assert set(fields.json()) == {"status", "time"}


async def test_judge0_http_shapes_wait_base64_and_refusals(pipeline: Settings) -> None:
    async with running_gateway(pipeline, max_wait_ms=RUN_TIMEOUT_S * 1000) as gw:
        http: httpx.AsyncClient = gw.client
        statuses = (await http.get("/judge0/statuses")).json()
        assert statuses[3] == {"id": 4, "description": "Wrong Answer"} and len(statuses) == 14
        languages = {lang["id"]: lang["name"] for lang in (await http.get("/judge0/languages")).json()}
        assert languages[71].startswith("Python (3.") and languages[50].startswith("C (GCC ")
        # wait=true with base64: the answer is the finished submission, encoded.
        body: dict[str, Any] = {"source_code": "cHJpbnQoJ2hpJyk=", "language_id": 71, "stack_limit": 64000}
        done = await http.post("/judge0/submissions?wait=true&base64_encoded=true", json=body, timeout=RUN_TIMEOUT_S)
        assert done.status_code == 201, done.text
        assert (done.json()["status"]["id"], done.json()["stdout"]) == (3, "aGkK")
        # A field we cannot honour, set away from its default, is refused naming it; null is accepted.
        refused = await http.post("/judge0/submissions", json={**body, "stack_limit": 1024})
        assert refused.status_code == 422 and refused.json()["error"]["field"] == "stack_limit"
        nulls = {"source_code": "print(1)", "language_id": 71, "redirect_stderr_to_stdout": None, "callback_url": None}
        assert (await http.post("/judge0/submissions", json=nulls)).status_code == 201
        # A native refusal is renamed to the Judge0 field.
        too_big = await http.post("/judge0/submissions", json={**nulls, "memory_limit": 1e9})
        assert too_big.status_code == 422 and too_big.json()["error"]["field"] == "memory_limit"
        unknown = await http.post("/judge0/submissions", json={**nulls, "language_id": 9999})
        assert unknown.status_code == 422 and unknown.json()["error"]["field"] == "language_id"
        batch = await http.get("/judge0/submissions/batch", params={"tokens": "00000000-0000-4000-8000-000000000000"})
        assert batch.json() == {"submissions": [None]}
