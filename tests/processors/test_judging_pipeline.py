"""Judged executions (issue 23) through the gateway, the real broker, the real processors and real
bubblewrap sandboxes: verdicts per case, the compile once for N cases, checkers, the audit trail."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from streams.settings import Settings
from streams.states import State
from tests.gateway.helpers import running_gateway
from tests.helpers import events_by_id, free_port, results_by_id
from tests.observability.helpers import scrape, value

pytestmark = [pytest.mark.kafka, pytest.mark.sandbox]

WAIT_S = 120

C_SUM = """
#include <stdio.h>
int main(void) {
    long a, b;
    if (scanf("%ld %ld", &a, &b) != 2) return 2;
    /* MARK */
    if (BUG && a == 2) { printf("%ld\\n", a + b + 1); return 0; }
    if (BUG && a == 5) { for (;;) {} }
    printf("%ld\\n", a + b);
    return 0;
}
"""

CASES: list[dict[str, Any]] = [
    {"stdin": "1 2\n", "expected_stdout": "3\n"},
    {"stdin": "2 2\n", "expected_stdout": "4\n"},
    {"stdin": "5 5\n", "expected_stdout": "10\n", "wall_time_ms": 1000},
    {"stdin": "10 20\n", "expected_stdout": "30\n"},
]


def c_program(bug: bool) -> str:
    # A mark of its own, so that this test's compile is a miss of the shared compile cache.
    return C_SUM.replace("BUG", "1" if bug else "0").replace("MARK", uuid.uuid4().hex)


async def judge(gw: Any, body: dict[str, Any]) -> dict[str, Any]:
    response = await gw.client.post("/v1/executions?wait=true", json=body, timeout=WAIT_S + 10)
    assert response.status_code == 200, response.text
    execution: dict[str, Any] = response.json()
    return execution


async def test_c_judged_per_case_and_compiled_once(settings: Settings, start_worker: Any) -> None:
    port = free_port()
    worker = start_worker(settings, "all", env={"AEVATAR_METRICS_PORT": str(port)})
    metrics = f"http://127.0.0.1:{port}/metrics"
    async with running_gateway(settings, max_wait_ms=WAIT_S * 1000) as gw:
        right = await judge(gw, {"language": "c", "code": c_program(False), "tests": CASES})
        assert right["state"] == "SUCCEEDED", right
        judgement = right["judgement"]
        assert [c["verdict"] for c in judgement["cases"]] == ["ACCEPTED"] * 4
        assert (judgement["passed"], judgement["total"], judgement["first_failure"]) == (4, 4, None)
        assert [c["stdout"] for c in judgement["cases"]] == ["3\n", "4\n", "10\n", "30\n"]
        assert all(c["exit_code"] == 0 and c["memory_peak_kib"] > 0 for c in judgement["cases"])
        # Compiled once for the four cases: one miss of the compile cache, then three hits.
        scraped = await scrape(metrics)
        assert value(scraped, "sandbox_compile_cache_misses_total", language="c") == 1
        assert value(scraped, "sandbox_compile_cache_hits_total", language="c") == 3

        wrong = await judge(gw, {"language": "c", "code": c_program(True), "tests": CASES})
        cases = wrong["judgement"]["cases"]
        assert [c["verdict"] for c in cases] == ["ACCEPTED", "WRONG_ANSWER", "TIME_LIMIT", "ACCEPTED"]
        assert (cases[1]["line"], cases[1]["expected_line"], cases[1]["actual_line"]) == (1, "4", "5")
        assert cases[1]["message"] == "line 1: expected '4', got '5'"
        # The infinite loop met its own case's wall time; the case after it was judged anyway.
        assert (cases[2]["state"], cases[2]["limit"], cases[2]["signal"]) == ("LIMIT_EXCEEDED", "wall_time", 9)
        assert cases[2]["run_ms"] >= 1000
        assert wrong["judgement"]["first_failure"] == 1 and wrong["judgement"]["passed"] == 2
        # The first failing case decides the execution: it ran and printed 5, so FAILED with exit 0.
        assert (wrong["state"], wrong["exit_code"], wrong["stdout"]) == ("FAILED", 0, "5\n")
        assert wrong["reason"] == "WRONG_ANSWER on case 1: line 1: expected '4', got '5'"

        broken = await judge(gw, {"language": "c", "code": "int main( {", "tests": CASES})
        assert broken["state"] == "COMPILE_ERROR" and "error" in broken["compile_output"]
        assert [c["verdict"] for c in broken["judgement"]["cases"]] == ["SKIPPED"] * 4

    # The audit trail: the verdicts are in the terminal transition on sandbox.events, and in the one result.
    events = (await events_by_id(settings))[wrong["id"]]
    terminal = [e for e in events if e.state.terminal]
    assert {e.state for e in terminal} == {State.FAILED}
    assert terminal[0].outcome is not None and terminal[0].outcome.judgement is not None
    assert [c.verdict for c in terminal[0].outcome.judgement.cases][1] == "WRONG_ANSWER"
    results = (await results_by_id(settings))[wrong["id"]]
    assert len(results) == 1 and results[0].judgement == terminal[0].outcome.judgement
    assert worker.proc.poll() is None, worker.log()


CHECKER = """
import sys
given, wanted, actual = (open(p).read().split() for p in sys.argv[1:4])
if int(actual[0]) % 2 == int(wanted[0]) % 2:
    sys.exit(0)
print(f"parity of {actual[0]} is not that of {wanted[0]}")
sys.exit(1)
"""


async def test_python_checkers_and_stopping_early(pipeline: Settings) -> None:
    async with running_gateway(pipeline, max_wait_ms=WAIT_S * 1000) as gw:
        thirds = [{"stdin": "3\n", "expected_stdout": "0.333333\n"}, {"stdin": "7\n", "expected_stdout": "0.142857"}]
        code = "print(1 / int(input()))"
        floats = await judge(gw, {"language": "python", "code": code, "tests": thirds, "checker": {"kind": "float"}})
        assert floats["state"] == "SUCCEEDED" and floats["judgement"]["checker"] == "float"
        exact = await judge(gw, {"language": "python", "code": code, "tests": thirds, "checker": {"kind": "exact"}})
        assert [c["verdict"] for c in exact["judgement"]["cases"]] == ["WRONG_ANSWER", "WRONG_ANSWER"]

        parity = [{"stdin": "", "expected_stdout": "2"}, {"stdin": "", "expected_stdout": "5"}]
        program = {"kind": "program", "language": "python", "code": CHECKER}
        checked = await judge(gw, {"language": "python", "code": "print(4)", "tests": parity, "checker": program})
        cases = checked["judgement"]["cases"]
        assert [c["verdict"] for c in cases] == ["ACCEPTED", "WRONG_ANSWER"]
        assert cases[1]["message"] == "parity of 4 is not that of 5"

        crashing = "import sys\nsys.exit(3 if input() == 'x' else 0)"
        three = [{"stdin": "x\n", "expected_stdout": ""}, {"stdin": "y\n"}, {"stdin": "z\n"}]
        stopped = await judge(
            gw, {"language": "python", "code": crashing, "tests": three, "stop_on_first_failure": True}
        )
        assert [c["verdict"] for c in stopped["judgement"]["cases"]] == ["RUNTIME_ERROR", "SKIPPED", "SKIPPED"]
        assert (stopped["state"], stopped["exit_code"]) == ("FAILED", 3)
        assert stopped["judgement"]["cases"][0]["message"] == "exit code 3"

        refused: list[tuple[dict[str, Any], str]] = [
            ({"stdin": "1", "tests": thirds}, "stdin"),
            ({"tests": thirds, "checker": {"kind": "regex"}}, "checker.kind"),
            ({"tests": [{"wall_time_ms": 10**9}]}, "tests[0].wall_time_ms"),
            ({"tests": thirds, "checker": {"kind": "program", "language": "cobol", "code": "x"}}, "checker.language"),
        ]
        for extra, field in refused:
            response = await gw.client.post("/v1/executions", json={"language": "python", "code": code, **extra})
            assert response.status_code == 422 and response.json()["error"]["field"] == field, response.text
