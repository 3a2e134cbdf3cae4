"""One /metrics in the embedded default: `aevatar-sandbox up` (every role in one process, no worker
metrics port) serves the pipeline's metrics on the gateway's /metrics, and a run moves them.

Real broker, real sandboxes, the real `up` as a subprocess.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from streams.settings import Settings
from tests.helpers import eventually, free_port
from tests.observability.helpers import samples, value

pytestmark = [pytest.mark.kafka, pytest.mark.sandbox]

RUN_TIMEOUT_S = 120


async def test_the_gateway_metrics_of_up_carry_the_pipeline_moved_by_a_run(
    settings: Settings, start_worker: Any
) -> None:
    port = free_port()
    start_worker(settings, command="up", env={"AEVATAR_GATEWAY_PORT": str(port), "AEVATAR_METRICS_PORT": "0"})
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=RUN_TIMEOUT_S) as client:

        async def ready() -> bool:
            try:
                return (await client.get("/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(ready, timeout_s=RUN_TIMEOUT_S)

        async def pool_filled() -> bool:  # the warm pool is on by default
            scraped = samples((await client.get("/metrics")).text)
            return value(scraped, "sandbox_warm_pool_sandboxes", language="python") >= 1

        await eventually(pool_filled, timeout_s=RUN_TIMEOUT_S)
        before = samples((await client.get("/metrics")).text)
        # Before any run the series exist at 0, so a dashboard's rate() sees the first one.
        assert ("sandbox_executions_total", frozenset({("language", "python"), ("state", "SUCCEEDED")})) in before
        assert value(before, "sandbox_stage_duration_seconds_count", stage="run") == 0

        response = await client.post("/v1/executions?wait=true", json={"language": "python", "code": "print('hi')"})
        assert response.status_code == 200, response.text
        assert (response.json()["state"], response.json()["stdout"]) == ("SUCCEEDED", "hi\n")

        async def moved() -> bool:  # completion counts the result once it has committed it
            after = samples((await client.get("/metrics")).text)
            return value(after, "sandbox_executions_total", language="python", state="SUCCEEDED") == 1

        await eventually(moved, timeout_s=RUN_TIMEOUT_S)
        after = samples((await client.get("/metrics")).text)
    for stage in ("validation", "queue_wait", "run", "completion", "end_to_end"):
        assert value(after, "sandbox_stage_duration_seconds_count", stage=stage) == 1, stage
    assert value(after, "sandbox_stage_duration_seconds_bucket", stage="run", le="+Inf") == 1
    # The gateway's own, the runtime's (the warm pool took it) and the executor's, on the same page.
    assert value(after, "sandbox_submissions_total", outcome="accepted") == 1
    assert value(after, "sandbox_warm_pool_hits_total", language="python") == 1
    assert ("sandbox_executor_runs", frozenset()) in after


def test_the_scrape_config_for_up_is_the_gateway_alone() -> None:
    config = yaml.safe_load((Path(__file__).parents[2] / "deploy" / "grafana" / "prometheus-up.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["static_configs"] == [{"targets": [f"127.0.0.1:{Settings().gateway_port}"]}]
    assert job["metrics_path"] == "/metrics"
