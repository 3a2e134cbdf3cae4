"""What the compatibility APIs (gateway/judge0_routes.py, gateway/piston_routes.py) share.

Both are translations over the native API: a peer's request becomes an `ExecutionCreate`, which
goes through the very handler of POST /v1/executions (authentication, rate limits, validation,
Kafka, the live view and `wait`), and the native `Execution` it answers becomes the peer's shape.
So a compatibility submission is an ordinary execution: on the audit trail, with exactly one
result, visible under /v1/executions/{id} as well.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Scope

from gateway.api_types import Accepted, ExecutionCreate
from gateway.api_types import Execution as NativeExecution
from gateway.errors import ApiError

Handler = Callable[[Request], Awaitable[Response]]

_ENCODER = msgspec.json.Encoder()
_EXECUTION = msgspec.json.Decoder(NativeExecution)
_ACCEPTED = msgspec.json.Decoder(Accepted)


@dataclass(frozen=True, slots=True)
class Submitted:
    """What the native handler answered: the finished execution, or its id and state while it runs."""

    id: str
    execution: NativeExecution | None


def _sub_scope(scope: Scope, body_bytes: int, wait: bool) -> Scope:
    headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() not in (b"content-length", b"content-type")]
    headers += [(b"content-length", str(body_bytes).encode()), (b"content-type", b"application/json")]
    return {**scope, "method": "POST", "headers": headers, "query_string": b"wait=true" if wait else b""}


async def submit(native: Handler, request: Request, body: ExecutionCreate, *, wait: bool) -> Submitted:
    """POST `body` to the native create handler within this request (its caller, its key, its state).

    Raises the native ApiError (422 naming the native field, 429, 503) for the caller to translate.
    """
    payload = _ENCODER.encode(body)
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": payload, "more_body": False}

    response = await native(Request(_sub_scope(request.scope, len(payload), wait), receive))
    raw = bytes(response.body)
    if response.status_code == 200:
        execution = _EXECUTION.decode(raw)
        return Submitted(execution.id, execution)
    return Submitted(_ACCEPTED.decode(raw).id, None)


def field_error(field: str, message: str, code: str = "unsupported_field") -> ApiError:
    return ApiError(422, code, f"{field}: {message}", field)


def renamed(exc: ApiError, fields: dict[str, str]) -> ApiError:
    """A native refusal, its native field (e.g. "limits.memory_mib") renamed to the peer's (e.g. "memory_limit")."""
    if exc.field is None:
        return exc
    field = fields.get(exc.field) or fields.get(exc.field.split(".")[0] + ".*") or exc.field
    message = exc.message if field == exc.field else f"{field} (native {exc.field}): {exc.message}"
    return ApiError(exc.status, exc.code, message, field, exc.headers)


def normalized_prefix(prefix: str) -> str:
    """ "/judge0", "judge0/", "/" and "" → "/judge0", "/judge0", "", ""."""
    stripped = prefix.strip().strip("/")
    return f"/{stripped}" if stripped else ""
