"""Rate limits that fit the deployment: none in the open (loopback, no keys) mode, per-tenant buckets
with keys, overridable per tenant; every 429 carries Retry-After and the client waits it out."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.auth import KeyRing, hash_key
from gateway.client import GatewayClient
from gateway.errors import ApiError
from gateway.ratelimit import Rate, RateLimiter
from gateway.server import rate_limiter, stream_slots
from streams.settings import Settings, SettingsError, parse_rate_limits
from tests.gateway.helpers import running_gateway

KEYS = f"acme:{hash_key('key-acme')},acme:{hash_key('key-acme-2')},globex:{hash_key('key-globex')}"


def test_the_open_mode_has_no_rate_limit_and_one_stream_bound() -> None:
    settings = Settings()
    limiter = rate_limiter(settings, KeyRing.load(file=None, inline=""))
    assert limiter.rate_for("default") is None
    assert all(limiter.check("ip:127.0.0.1", 0.0, "default") == 0 for _ in range(10_000))
    slots = stream_slots(settings, KeyRing.load(file=None, inline=""))
    assert slots.max_streams_per_tenant == slots.max_streams == settings.sse_max_streams


def test_with_keys_every_tenant_has_the_settings_rate_and_overrides_win() -> None:
    settings = Settings(rate_limit_per_min=60, rate_limit_burst=2, rate_limits="globex=600/5")
    limiter = rate_limiter(settings, KeyRing.load(file=None, inline=KEYS))
    assert limiter.rate_for("acme") == Rate(60, 2)
    assert limiter.rate_for("globex") == Rate(600, 5)
    assert [limiter.check("tenant:acme", 0.0, "acme") for _ in range(3)] == [0, 0, 1]
    assert [limiter.check("tenant:globex", 0.0, "globex") for _ in range(6)] == [0] * 5 + [1]
    # Naming the open mode's tenant limits that mode too.
    open_limited = rate_limiter(Settings(rate_limits="default=60/1"), KeyRing.load(file=None, inline=""))
    assert [open_limited.check("ip:x", 0.0, "default") for _ in range(2)] == [0, 1]


def test_rate_limits_setting_is_checked_at_start() -> None:
    assert parse_rate_limits(" a=10/2, b.c=0/1 ") == {"a": (10, 2), "b.c": (0, 1)}
    for bad in ("a", "a=10", "a=x/2", "=1/1", "a=10/0", "a=-1/3"):
        with pytest.raises(SettingsError, match="AEVATAR_RATE_LIMITS"):
            Settings.from_env({"AEVATAR_RATE_LIMITS": bad})
    assert RateLimiter(per_min=None).check("k", 0.0) == 0


@pytest.mark.kafka
async def test_a_burst_of_300_on_loopback_with_no_keys_gets_no_429(settings: Settings) -> None:
    async with running_gateway(settings) as gw:
        assert gw.settings.gateway_host == "127.0.0.1" and not gw.settings.api_keys

        async def submit(n: int) -> int:
            body = {"language": "python", "code": f"print({n})", "id": f"burst-{n}"}
            response = await gw.client.post("/v1/executions", json=body)
            return response.status_code

        statuses = await asyncio.gather(*(submit(n) for n in range(300)))
        languages = await asyncio.gather(*(gw.client.get("/v1/languages") for _ in range(300)))
    assert statuses.count(202) == 300, sorted(set(statuses))
    assert all(r.status_code == 200 for r in languages)


@pytest.mark.kafka
async def test_a_tenant_shares_its_bucket_across_keys_and_every_429_has_retry_after(settings: Settings) -> None:
    async with running_gateway(
        settings, api_keys=KEYS, webhook_secret="rate-test-secret", rate_limit_per_min=60, rate_limit_burst=2
    ) as gw:
        first, second = ({"Authorization": f"Bearer {k}"} for k in ("key-acme", "key-acme-2"))
        answers = [await gw.client.get("/v1/languages", headers=h) for h in (first, second, first, second)]
        assert [r.status_code for r in answers] == [200, 200, 429, 429]
        assert all(int(r.headers["retry-after"]) >= 1 for r in answers[2:])
        other = await gw.client.get("/v1/languages", headers={"Authorization": "Bearer key-globex"})
        assert other.status_code == 200  # another tenant's bucket


@pytest.mark.kafka
async def test_the_python_client_waits_out_a_429(settings: Settings) -> None:
    async with running_gateway(
        settings, api_keys=KEYS, webhook_secret="rate-test-secret", rate_limit_per_min=60, rate_limit_burst=1
    ) as gw:
        waits: list[float] = []

        def sleep(seconds: float) -> None:
            waits.append(seconds)
            time.sleep(seconds)

        def calls() -> list[list[dict[str, object]]]:
            with GatewayClient(gw.url, "key-acme", sleep=sleep) as client:
                return [client.languages(), client.languages()]  # the second finds the bucket empty

        answers = await asyncio.to_thread(calls)
    assert len(answers) == 2 and answers[0] == answers[1]
    assert waits and all(w >= 1 for w in waits)


@pytest.mark.kafka
async def test_the_client_gives_up_past_its_budget(settings: Settings) -> None:
    async with running_gateway(
        settings, api_keys=KEYS, webhook_secret="rate-test-secret", rate_limit_per_min=0, rate_limit_burst=1
    ) as gw:

        def calls() -> ApiError:
            with GatewayClient(gw.url, "key-globex", retry_budget_s=5, sleep=lambda s: None) as client:
                client.languages()
                with pytest.raises(ApiError) as refused:
                    client.languages()  # no refill: Retry-After (capped at 30 s) is past the budget
                return refused.value

        error = await asyncio.to_thread(calls)
    assert error.status == 429 and error.code == "rate_limited"
