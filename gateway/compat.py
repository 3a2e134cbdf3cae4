"""Mounting the compatibility APIs (Judge0 and Piston) under their configured prefixes."""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount

from gateway.compat_common import Handler, normalized_prefix
from gateway.judge0_routes import Judge0Api
from gateway.piston_routes import PistonApi
from streams.settings import Settings


def _under(prefix: str, routes: list[BaseRoute]) -> list[BaseRoute]:
    path = normalized_prefix(prefix)
    return [Mount(path, routes=routes)] if path else routes  # "" : at the root, beside /v1


def routes(settings: Settings, native_create: Handler) -> list[BaseRoute]:
    """The Judge0 API under settings.judge0_prefix and the Piston API under settings.piston_prefix."""
    mounted: list[BaseRoute] = []
    if settings.judge0_enabled:
        mounted += _under(settings.judge0_prefix, Judge0Api(native_create).routes())
    if settings.piston_enabled:
        mounted += _under(settings.piston_prefix, PistonApi(native_create).routes())
    return mounted
