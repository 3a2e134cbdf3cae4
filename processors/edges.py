"""What every processor shares at its edge: the clock, log context and the transition log line.

Every log line made while a message is handled carries the execution id, tenant and trace id
(`bound`); every record a processor produces carries its execution's W3C traceparent header.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import structlog

from streams.records import ExecutionEvent
from streams.tracing import TraceContext

log = structlog.get_logger()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@contextlib.contextmanager
def bound(execution_id: str, tenant: str, trace: TraceContext | None) -> Iterator[None]:
    """Log lines inside carry the execution id, the tenant and the trace id (structlog contextvars)."""
    with structlog.contextvars.bound_contextvars(
        execution_id=execution_id, tenant=tenant, trace_id=trace.trace_id if trace is not None else None
    ):
        yield


def log_transition(stage: str, event: ExecutionEvent) -> None:
    """The log line of one transition a processor emits (inside `bound`, so it carries the ids)."""
    log.info("transition", stage=stage, id=event.execution_id, seq=event.seq, state=event.state.value)
