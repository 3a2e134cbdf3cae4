"""The Judge0-compatible HTTP API (issue 23, point 3): thin routes over gateway/judge0.py.

Mounted under `settings.judge0_prefix` ("/judge0" by default), so a Judge0 client's base URL is
http://HOST:PORT/judge0. A submission is posted through the native create handler (see
gateway/compat_common.py); its token is the execution's id, in Judge0's UUID form.
"""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gateway import judge0
from gateway.app import Services, guard, json_response
from gateway.compat_common import Handler, renamed, submit
from gateway.errors import ApiError, from_decode_error, from_validation_error

_T = TypeVar("_T")
_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no", ""}


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _flag(request: Request, name: str) -> bool:
    raw = request.query_params.get(name, "false").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ApiError(422, "invalid_query", f"{name} must be true or false", name)


def _decode(raw: bytes, kind: type[_T]) -> _T:
    try:
        return msgspec.json.decode(raw, type=kind, strict=False)
    except msgspec.ValidationError as exc:
        raise from_validation_error(exc) from None
    except msgspec.DecodeError as exc:
        raise from_decode_error(exc) from None


async def _languages(services: Services) -> dict[str, str]:
    return {info.name: info.version or "unknown" for info in await services.languages.languages() if info.available}


class Judge0Api:
    """The routes, given the native create handler (POST /v1/executions)."""

    def __init__(self, native_create: Handler) -> None:
        self.native_create = native_create
        self.language_ids = judge0.default_language_ids()

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/about", self.about, methods=["GET"]),
            Route("/config_info", self.config_info, methods=["GET"]),
            Route("/statuses", self.statuses, methods=["GET"]),
            Route("/languages", self.languages, methods=["GET"]),
            Route("/languages/{id:int}", self.language, methods=["GET"]),
            Route("/submissions", self.create, methods=["POST"]),
            Route("/submissions/batch", self.create_batch, methods=["POST"]),
            Route("/submissions/batch", self.get_batch, methods=["GET"]),
            Route("/submissions/{token}", self.get, methods=["GET"]),
        ]

    async def about(self, request: Request) -> Response:
        guard(request)
        return json_response(
            {
                "version": judge0.JUDGE0_VERSION,
                "homepage": "gateway/README.md#judge0-compatible-api",
                "source_code": "aevatar-sandbox",
                "maintainer": "aevatar-sandbox (a Judge0-compatible API over its native one)",
            }
        )

    async def config_info(self, request: Request) -> Response:
        guard(request)
        services = _services(request)
        return json_response(judge0.config_info(services.policy, max_wait_ms=services.settings.max_wait_ms))

    async def statuses(self, request: Request) -> Response:
        guard(request)
        return json_response([{"id": s.id, "description": s.description} for s in judge0.STATUSES])

    async def languages(self, request: Request) -> Response:
        guard(request)
        return json_response(judge0.language_list(await _languages(_services(request))))

    async def language(self, request: Request) -> Response:
        guard(request)
        language_id: int = request.path_params["id"]
        lang = judge0.BY_ID.get(language_id)
        available = await _languages(_services(request))
        if lang is None or lang.language not in available:
            raise ApiError(404, "not_found", f"no language with id {language_id} here", "id")
        return json_response(
            {
                "id": lang.id,
                "name": judge0.language_name(lang.language, available[lang.language]),
                "is_archived": False,
                "source_file": None,
                "compile_cmd": None,
                "run_cmd": None,
            }
        )

    async def _submit(self, request: Request, body: judge0.SubmissionBody, *, b64: bool, wait: bool) -> Any:
        execution_id = uuid.uuid4().hex
        create = judge0.to_create(body, execution_id=execution_id, base64_encoded=b64)
        try:
            submitted = await submit(self.native_create, request, create, wait=wait)
        except ApiError as exc:
            raise renamed(exc, dict(judge0.NATIVE_FIELDS)) from None
        if submitted.execution is None:
            return {"token": judge0.token_of(submitted.id)}
        return judge0.to_submission(
            submitted.execution, fields=judge0.DEFAULT_FIELDS, base64_encoded=b64, language_ids=self.language_ids
        )

    async def create(self, request: Request) -> Response:
        b64, wait = _flag(request, "base64_encoded"), _flag(request, "wait")
        body = _decode(await request.body(), judge0.SubmissionBody)
        return json_response(await self._submit(request, body, b64=b64, wait=wait), 201)

    async def create_batch(self, request: Request) -> Response:
        b64 = _flag(request, "base64_encoded")
        batch = _decode(await request.body(), judge0.BatchBody)
        if not 1 <= len(batch.submissions) <= judge0.MAX_BATCH_SIZE:
            raise ApiError(
                422,
                "invalid_value",
                f"submissions: a batch holds 1 to {judge0.MAX_BATCH_SIZE} submissions, got {len(batch.submissions)}",
                "submissions",
            )
        answers: list[Any] = []
        for index, body in enumerate(batch.submissions):
            try:
                answers.append(await self._submit(request, body, b64=b64, wait=False))
            except ApiError as exc:
                if exc.status != 422:
                    raise
                # Judge0 answers each refused item in place; the others are submitted.
                answers.append({"error": exc.message, "field": f"submissions[{index}].{exc.field}"})
        return json_response(answers, 201)

    def _one(self, request: Request, token: str, fields: tuple[str, ...], b64: bool) -> dict[str, Any] | None:
        services = _services(request)
        principal = request.state.principal
        record = services.live.get(judge0.execution_id_of(token))
        if record is None or not (services.keys.open or record.tenant == principal.tenant):
            return None
        return judge0.to_submission(
            record.execution(), fields=fields, base64_encoded=b64, language_ids=self.language_ids
        )

    async def get(self, request: Request) -> Response:
        guard(request)
        b64 = _flag(request, "base64_encoded")
        fields = judge0.parse_fields(request.query_params.get("fields"))
        token: str = request.path_params["token"]
        request.state.execution_id = judge0.execution_id_of(token)
        found = self._one(request, token, fields, b64)
        if found is None:
            raise ApiError(404, "not_found", f"no submission with token {token!r}", "token")
        return json_response(found)

    async def get_batch(self, request: Request) -> Response:
        guard(request)
        b64 = _flag(request, "base64_encoded")
        fields = judge0.parse_fields(request.query_params.get("fields"))
        tokens = [t.strip() for t in request.query_params.get("tokens", "").split(",") if t.strip()]
        if not 1 <= len(tokens) <= judge0.MAX_BATCH_SIZE:
            raise ApiError(
                422, "invalid_query", f"tokens: give 1 to {judge0.MAX_BATCH_SIZE} comma-separated tokens", "tokens"
            )
        # An unknown token answers null in its place, as Judge0 does.
        return json_response({"submissions": [self._one(request, token, fields, b64) for token in tokens]})
