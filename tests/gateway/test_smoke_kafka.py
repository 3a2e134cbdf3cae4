from __future__ import annotations

import pytest

from streams.settings import Settings
from tests.gateway.helpers import running_gateway

pytestmark = pytest.mark.kafka


async def test_gateway_starts_and_answers_health(settings: Settings) -> None:
    async with running_gateway(settings) as gw:
        assert (await gw.client.get("/healthz")).json() == {"status": "ok", "kafka": None, "view_ready": None}
        ready = await gw.client.get("/readyz")
        assert ready.status_code == 200, ready.text
