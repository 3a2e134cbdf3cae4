"""Webhook signatures: HMAC-SHA256 over f"{t}.{body}", sent as `X-Aevatar-Signature: t=<unix>,v1=<hex>`.

Pure; `verify` is the recipe receivers follow (gateway/README.md shows it standalone).
"""

from __future__ import annotations

import hashlib
import hmac

HEADER = "X-Aevatar-Signature"
DEFAULT_TOLERANCE_S = 300


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The header value for `body` sent at unix time `timestamp`."""
    return f"t={timestamp},v1={_mac(secret, timestamp, body)}"


def verify(secret: str, header: str, body: bytes, now_s: int, tolerance_s: int = DEFAULT_TOLERANCE_S) -> bool:
    """Whether `header` signs `body` with `secret`, at most `tolerance_s` away from `now_s`."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if sep:
            parts.setdefault(name, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    if abs(now_s - timestamp) > tolerance_s:
        return False
    expected = _mac(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in parts.get("v1", []))
