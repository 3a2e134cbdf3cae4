"""No known secret in production (issue 29, point 3).

A gateway with API keys, or bound beyond loopback, refuses to start without a webhook secret of
its own, with a published default secret, or with the published development key. The embedded
dev mode signs with a random secret kept in the data dir. Pure rules first, then the real gateway
(real broker) refusing to start, and signing a real delivery with the dev secret.
"""

from __future__ import annotations

import asyncio
import json
import stat
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from gateway import signature
from gateway.auth import KeyRing, hash_key, new_key
from gateway.errors import ConfigError
from gateway.secrets import DEV_SECRET_FILE, PUBLISHED_KEYS, PUBLISHED_SECRETS, with_webhook_secret
from streams.settings import Settings
from tests.gateway.helpers import Feeder, result_for, running_gateway, webhook_receiver

ROOT = Path(__file__).resolve().parents[2]
OWN_KEY = new_key("acme")[1]
PUBLISHED_KEY = f"dev:{hash_key('aevatar-dev-key')}"


def _keys(inline: str) -> KeyRing:
    return KeyRing.load(file=None, inline=inline)


def test_the_settings_default_is_no_secret_at_all() -> None:
    assert Settings().webhook_secret == ""
    assert Settings.from_env({}).webhook_secret == ""


@pytest.mark.parametrize(
    ("host", "inline"),
    [("127.0.0.1", OWN_KEY), ("0.0.0.0", OWN_KEY), ("::", OWN_KEY), ("10.0.0.5", "")],
)
@pytest.mark.parametrize("secret", ["", *sorted(PUBLISHED_SECRETS)])
def test_production_refuses_a_missing_or_published_secret(host: str, inline: str, secret: str, tmp_path: Path) -> None:
    settings = Settings(gateway_host=host, webhook_secret=secret, data_dir=tmp_path)
    with pytest.raises(ConfigError, match="AEVATAR_WEBHOOK_SECRET"):
        with_webhook_secret(settings, _keys(inline))
    assert list(tmp_path.iterdir()) == []  # no dev secret made for a production gateway


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_production_refuses_the_published_key(host: str, tmp_path: Path) -> None:
    settings = Settings(gateway_host=host, webhook_secret="a-secret-of-our-own", data_dir=tmp_path)
    with pytest.raises(ConfigError, match="published development key"):
        with_webhook_secret(settings, _keys(f"{OWN_KEY},{PUBLISHED_KEY}"))


def test_production_with_its_own_secret_and_keys_starts() -> None:
    settings = Settings(gateway_host="0.0.0.0", webhook_secret="a-secret-of-our-own")
    assert with_webhook_secret(settings, _keys(OWN_KEY)) is settings


def test_dev_mode_makes_one_random_secret_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "state")
    first = with_webhook_secret(settings, _keys("")).webhook_secret
    path = tmp_path / "state" / DEV_SECRET_FILE
    assert path.read_text().strip() == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 32 and first not in PUBLISHED_SECRETS
    assert with_webhook_secret(settings, _keys("")).webhook_secret == first  # kept across restarts
    other = with_webhook_secret(Settings(data_dir=tmp_path / "other"), _keys("")).webhook_secret
    assert other != first  # random per state dir
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == [DEV_SECRET_FILE]  # no temp file left


def test_dev_mode_keeps_a_secret_it_is_given(tmp_path: Path) -> None:
    settings = Settings(webhook_secret="mine", data_dir=tmp_path)
    assert with_webhook_secret(settings, _keys("")).webhook_secret == "mine"
    assert list(tmp_path.iterdir()) == []


def test_docker_compose_ships_no_published_key_or_secret() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env = compose["services"]["gateway"]["environment"]
    text = json.dumps(env)
    assert hash_key("aevatar-dev-key") not in text
    assert not any(secret in text for secret in PUBLISHED_SECRETS | PUBLISHED_KEYS)
    # Required, with no fallback: `${VAR:?message}` makes `docker compose up` fail until they are set.
    assert env["AEVATAR_API_KEYS"].startswith("${AEVATAR_API_KEYS:?")
    assert env["AEVATAR_WEBHOOK_SECRET"].startswith("${AEVATAR_WEBHOOK_SECRET:?")


@pytest.mark.kafka
async def test_a_gateway_with_keys_and_no_secret_does_not_start(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="AEVATAR_WEBHOOK_SECRET is not set"):
        async with running_gateway(replace(settings, webhook_secret=""), api_keys=OWN_KEY):
            pass
    with pytest.raises(ConfigError, match="published default"):
        async with running_gateway(settings, api_keys=OWN_KEY, webhook_secret="aevatar-dev-webhook-secret"):
            pass


@pytest.mark.kafka
async def test_the_dev_mode_signs_deliveries_with_the_secret_in_its_data_dir(
    settings: Settings, tmp_path: Path
) -> None:
    dev = replace(settings, webhook_secret="", data_dir=tmp_path, webhook_allow_private=True)
    async with webhook_receiver() as (url, received), running_gateway(dev), Feeder(settings) as feed:
        await feed.result(result_for("dev-secret-1", callback_url=url))
        async with asyncio.timeout(20):
            while not received:
                await asyncio.sleep(0.05)
    secret = (tmp_path / DEV_SECRET_FILE).read_text().strip()
    (delivery,) = received
    header = delivery.headers["x-aevatar-signature"]
    assert signature.verify(secret, header, delivery.body, int(time.time()))
    for known in PUBLISHED_SECRETS | {""}:
        assert not signature.verify(known, header, delivery.body, int(time.time()))
