"""Structured JSON log lines (structlog), on a logger of the gateway's own: no global configuration.

`audit` writes the one line per HTTP request: who, what, which execution, the outcome.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

import structlog

_PROCESSORS: list[Any] = [
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.JSONRenderer(sort_keys=False),
]


def logger(name: str, file: TextIO | None = None) -> Any:
    """A JSON-lines logger writing to `file` (stderr by default)."""
    return structlog.wrap_logger(
        structlog.PrintLogger(file or sys.stderr), processors=list(_PROCESSORS), logger_name=name
    )


class AuditLog:
    def __init__(self, file: TextIO | None = None) -> None:
        self._log = logger("aevatar.gateway.audit", file)

    def request(
        self,
        *,
        tenant: str,
        key_id: str,
        client: str | None,
        method: str,
        route: str,
        path: str,
        status: int,
        duration_ms: int,
        execution_id: str | None,
        outcome: str,
        trace_id: str | None = None,
    ) -> None:
        self._log.info(
            "audit",
            tenant=tenant,
            key_id=key_id,
            client=client,
            method=method,
            route=route,
            path=path,
            execution_id=execution_id,
            trace_id=trace_id,
            status=status,
            outcome=outcome,
            duration_ms=duration_ms,
        )
