"""API keys: stored as sha256 hashes, each with a tenant name. No I/O but reading the key file.

Key file and AEVATAR_API_KEYS use one format: `<tenant>:<sha256 hex of the key>` per entry
(one per line in the file, comma-separated in the variable; `#` starts a comment in the file).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import ApiError, ConfigError

# Matched whole with fullmatch: `$` would also accept a trailing newline.
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_HEX = re.compile(r"[0-9a-f]{64}")
KEY_PREFIX = "aev_"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the tenant, and a short id of the key that is safe to log."""

    tenant: str
    key_id: str


ANONYMOUS = Principal("default", "-")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key(tenant: str) -> tuple[str, str]:
    """A fresh random key and the `<tenant>:<hash>` entry to store for it."""
    if not _TENANT.fullmatch(tenant):
        raise ConfigError(f"tenant {tenant!r} must be 1-64 characters of [A-Za-z0-9._-]")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, f"{tenant}:{hash_key(key)}"


def parse_entries(entries: list[str], source: str) -> dict[str, str]:
    """hash → tenant, from `<tenant>:<hex>` entries; a malformed one is a ConfigError naming its source."""
    keys: dict[str, str] = {}
    for n, raw in enumerate(entries, 1):
        entry = raw.split("#", 1)[0].strip()
        if not entry:
            continue
        tenant, sep, digest = entry.rpartition(":")
        digest = digest.strip().lower().removeprefix("sha256=")
        if not sep or not _TENANT.fullmatch(tenant.strip()) or not _HEX.fullmatch(digest):
            raise ConfigError(f"{source} entry {n} is not `<tenant>:<sha256 hex>`")
        keys[digest] = tenant.strip()
    return keys


class KeyRing:
    """The configured keys. Empty means the gateway is open (and then bound to loopback only)."""

    def __init__(self, hashes: dict[str, str] | None = None) -> None:
        self._tenants = dict(hashes or {})

    @classmethod
    def load(cls, *, file: Path | None, inline: str) -> KeyRing:
        keys: dict[str, str] = {}
        if file is not None:
            try:
                text = file.read_text()
            except OSError as exc:
                raise ConfigError(f"cannot read AEVATAR_API_KEYS_FILE {file}: {exc.strerror}") from None
            keys.update(parse_entries(text.splitlines(), f"AEVATAR_API_KEYS_FILE {file}"))
        if inline.strip():
            keys.update(parse_entries(inline.split(","), "AEVATAR_API_KEYS"))
        return cls(keys)

    @property
    def open(self) -> bool:
        return not self._tenants

    def __len__(self) -> int:
        return len(self._tenants)

    def authenticate(self, authorization: str | None) -> Principal:
        """The caller for an `Authorization` header value; 401 when keys are configured and it does not match."""
        if self.open:
            return ANONYMOUS
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(
                401, "unauthorized", "send `Authorization: Bearer <key>`", None, {"WWW-Authenticate": "Bearer"}
            )
        digest = hash_key(token.strip())
        tenant = self._tenants.get(digest)
        if tenant is None:
            raise ApiError(401, "unauthorized", "unknown API key", None, {"WWW-Authenticate": "Bearer"})
        return Principal(tenant, digest[:12])
