"""One exception tree for the gateway, and the mapping of every refusal to the public error shape.

The error body is fixed by the API contract: {"error": {"code", "message", "field"}}.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:  # an annotation only: the CLI's client imports this module without the processors
    from processors.rules import Rejection


class GatewayError(Exception):
    """Base of every error raised by the gateway package."""


class ConfigError(GatewayError):
    """The gateway cannot start as configured (the message says what to change)."""


class ApiError(GatewayError):
    """A refusal that the HTTP edge turns into a 4xx/5xx response with the contract's error body."""

    def __init__(
        self, status: int, code: str, message: str, field: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers = headers or {}

    def body(self) -> dict[str, dict[str, str | None]]:
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}


class GatewayUnavailable(GatewayError):
    """The CLI client could not reach a gateway."""


_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_MISSING = re.compile(r"missing required field `(?P<name>[^`]+)`")
_UNKNOWN = re.compile(r"unknown field `(?P<name>[^`]+)`")


def _dotted(path: str) -> str:
    """msgspec's "$.limits.memory_mib" / "$.args[0]" path, without the "$" and the leading dot."""
    return path[1:] if path.startswith(".") else path


def from_validation_error(exc: msgspec.ValidationError) -> ApiError:
    """A body of the wrong shape: 422 naming the field msgspec points at."""
    text = str(exc)
    match = _AT.search(text)
    base = _dotted(match.group("path")) if match else ""
    message = text[: match.start()] if match else text
    name = _MISSING.search(message) or _UNKNOWN.search(message)
    if name:
        field = f"{base}.{name.group('name')}" if base else name.group("name")
        code = "missing_field" if "missing" in message else "unknown_field"
    else:
        field, code = base, "invalid_type"
    return ApiError(422, code, f"{message} (at {field or 'the body'})", field or None)


def from_decode_error(exc: msgspec.DecodeError) -> ApiError:
    return ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}", None)


def from_rejection(rejection: Rejection) -> ApiError:
    return ApiError(422, rejection.code, rejection.message, rejection.field)


def not_found(execution_id: str) -> ApiError:
    return ApiError(
        404,
        "not_found",
        f"no execution with id {execution_id!r} (one that finished beyond the view's retention is not "
        "served here any more; its result stays on sandbox.results)",
        "id",
    )
