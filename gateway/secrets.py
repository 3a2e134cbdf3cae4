"""The webhook signing secret, and the published credentials a gateway refuses to serve with.

A production gateway (API keys configured, or a bind beyond loopback) must be given its own
AEVATAR_WEBHOOK_SECRET and keys of its own: it refuses to start without a secret, with a secret
that was ever published as a default, or with a published key. The embedded dev mode (no keys,
loopback) gets a random secret, made once and kept in the data dir, so webhooks it signs stay
verifiable across restarts.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import replace
from pathlib import Path

from gateway.auth import KeyRing
from gateway.errors import ApiError, ConfigError
from streams.settings import Settings

LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
# Defaults this project once shipped in its settings and docker-compose.yml: everyone knows them.
PUBLISHED_SECRETS = frozenset({"aevatar-dev-webhook-secret"})
PUBLISHED_KEYS = frozenset({"aevatar-dev-key"})
DEV_SECRET_FILE = "webhook-secret"


def production(settings: Settings, keys: KeyRing) -> bool:
    """Keys configured, or bound beyond loopback: the gateway serves more than one local user."""
    return not keys.open or settings.gateway_host not in LOOPBACK


def published_key(keys: KeyRing) -> str | None:
    """A configured key whose plain text is public, or None."""
    if keys.open:
        return None  # an open gateway lets anyone in: no key to check
    for key in sorted(PUBLISHED_KEYS):
        with contextlib.suppress(ApiError):
            keys.authenticate(f"Bearer {key}")
            return key
    return None


def dev_secret(data_dir: Path) -> str:
    """The embedded dev mode's secret: random, made once, kept in `data_dir` (readable by its owner only)."""
    path = data_dir / DEV_SECRET_FILE
    with contextlib.suppress(FileNotFoundError):
        existing = path.read_text().strip()
        if existing:
            return existing
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    tmp = path.with_name(f".{DEV_SECRET_FILE}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, (secret + "\n").encode())
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # never replaces one another process made meanwhile
    except FileExistsError:
        secret = path.read_text().strip() or secret
    finally:
        tmp.unlink()
    return secret


def with_webhook_secret(settings: Settings, keys: KeyRing) -> Settings:
    """`settings` with the secret the webhooks are signed with; ConfigError for a production gateway
    without a secret of its own or with a published key."""
    if production(settings, keys):
        where = "API keys are configured" if not keys.open else f"the gateway binds {settings.gateway_host}"
        key = published_key(keys)
        if key is not None:
            raise ConfigError(
                f"refusing to start: {where} and one of them is the published development key {key!r}. "
                "Replace it with your own (`aevatar-sandbox apikey TENANT`)."
            )
        if not settings.webhook_secret:
            raise ConfigError(
                f"refusing to start: {where}, but AEVATAR_WEBHOOK_SECRET is not set, so webhooks could not "
                "be signed with a key of your own. Set it to a long random value."
            )
        if settings.webhook_secret in PUBLISHED_SECRETS:
            raise ConfigError(
                f"refusing to start: {where}, but AEVATAR_WEBHOOK_SECRET is a published default that anyone "
                "can sign with. Set it to a long random value."
            )
        return settings
    if settings.webhook_secret:
        return settings
    return replace(settings, webhook_secret=dev_secret(settings.data_dir))
