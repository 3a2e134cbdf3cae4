"""The gateway's view is bounded (real broker, real gateway): what it keeps, and what it reads at start."""

from __future__ import annotations

import asyncio

import pytest

from streams.settings import Settings
from tests.gateway.helpers import Feeder, result_for, running_gateway

pytestmark = pytest.mark.kafka
MIB = 1024 * 1024


async def test_a_flood_of_large_outputs_keeps_only_the_newest_within_the_output_budget(settings: Settings) -> None:
    # 12 executions of 1 MiB stdout + 1 MiB stderr (a tenant printing the maximum) against a 16 MiB
    # budget: without a bound the gateway would hold all 24 MiB (and twice that with the terminal events).
    async with running_gateway(settings, view_max_output_mib=16) as gw, Feeder(settings) as feed:
        for i in range(12):
            await feed.result(result_for(f"big-{i}", stdout=b"o" * MIB, stderr=b"e" * MIB))
        metrics = ""
        for _ in range(100):  # until all 12 are folded: 4 dropped
            metrics = (await gw.client.get("/metrics")).text
            if "sandbox_view_evicted_total 4.0" in metrics:
                break
            await asyncio.sleep(0.1)
        assert "sandbox_view_evicted_total 4.0" in metrics
        held = next(line for line in metrics.splitlines() if line.startswith("sandbox_view_output_bytes "))
        assert float(held.split()[1]) == 16 * MIB
        responses = [await gw.client.get(f"/v1/executions/big-{i}") for i in range(12)]
        kept = [r for r in responses if r.status_code == 200]
        assert len(kept) == 8 and all(len(r.json()["stdout"]) == MIB for r in kept)  # 8 x 2 MiB = 16 MiB
        assert sorted(r.status_code for r in responses) == [200] * 8 + [404] * 4


async def test_a_restarted_gateway_reads_only_its_retention_window(settings: Settings) -> None:
    async with Feeder(settings) as feed:
        await feed.result(result_for("before-window"))
        await asyncio.sleep(3.0)
        await feed.result(result_for("inside-window"))
    async with running_gateway(settings, view_retention_s=2) as gw:
        assert (await gw.client.get("/v1/executions/inside-window")).status_code == 200
        gone = await gw.client.get("/v1/executions/before-window")
        assert gone.status_code == 404
        assert "retention" in gone.json()["error"]["message"]
        # Never read at all (not read and then dropped): the start-up reads only the window.
        metrics = (await gw.client.get("/metrics")).text
        assert "sandbox_view_executions 1.0" in metrics and "sandbox_view_evicted_total 0.0" in metrics
