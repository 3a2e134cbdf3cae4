"""The Piston-compatible HTTP API (issue 23, point 4): thin routes over gateway/piston.py.

Mounted under `settings.piston_prefix` ("/piston" by default), so a Piston client's server is
http://HOST:PORT/piston. An execute is the native create handler with wait (compat_common.py).
Errors answer Piston's `{"message": ...}` beside the gateway's own `{"error": {code, message, field}}`.
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gateway import piston
from gateway.app import Services, guard, json_response
from gateway.compat_common import Handler, renamed, submit
from gateway.errors import ApiError, from_decode_error, from_validation_error


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _error(exc: ApiError) -> Response:
    body = {"message": exc.message, "error": {"code": exc.code, "message": exc.message, "field": exc.field}}
    return json_response(body, exc.status, exc.headers)


async def _available(services: Services) -> tuple[dict[str, str], dict[str, bool]]:
    infos = [info for info in await services.languages.languages() if info.available]
    return {i.name: i.version or "unknown" for i in infos}, {i.name: i.compiled for i in infos}


class PistonApi:
    """The routes, given the native create handler (POST /v1/executions)."""

    def __init__(self, native_create: Handler) -> None:
        self.native_create = native_create

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/api/v2/runtimes", self.runtimes, methods=["GET"]),
            Route("/api/v2/execute", self.execute, methods=["POST"]),
        ]

    async def runtimes(self, request: Request) -> Response:
        try:
            guard(request)
        except ApiError as exc:
            return _error(exc)
        versions, _ = await _available(_services(request))
        return json_response(piston.runtimes(versions))

    async def execute(self, request: Request) -> Response:
        try:
            return await self._execute(request)
        except ApiError as exc:
            request.state.outcome = exc.code
            return _error(exc)

    async def _execute(self, request: Request) -> Response:
        services = _services(request)
        try:
            body = msgspec.json.decode(await request.body(), type=piston.ExecuteBody)
        except msgspec.ValidationError as exc:
            raise from_validation_error(exc) from None
        except msgspec.DecodeError as exc:
            raise from_decode_error(exc) from None
        versions, compiled = await _available(services)
        language = piston.resolve(body.language, body.version, versions)
        create = piston.to_create(body, language=language)
        try:
            submitted = await submit(self.native_create, request, create, wait=True)
        except ApiError as exc:
            raise renamed(exc, dict(piston.NATIVE_FIELDS)) from None
        if submitted.execution is None:
            raise ApiError(
                504,
                "wait_timed_out",
                f"execution {submitted.id} did not finish within {services.settings.max_wait_ms} ms; "
                f"it goes on: GET /v1/executions/{submitted.id}",
                None,
            )
        return json_response(
            piston.to_response(submitted.execution, version=versions[language], compiled=compiled[language])
        )
