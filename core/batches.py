"""Batches of executions (issue 23, point 2), the pure rules.

A batch is many execution requests that share a `batch_id`: POST /v1/batches submits them in one
call, and any Kafka producer makes one by setting the same `batch_id` on its requests. Its state is
the states of its members, counted per state.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

MAX_BATCH_EXECUTIONS = 500
"""The most executions POST /v1/batches takes in one request (the body limit still applies)."""


def item_field(index: int, field: str | None) -> str:
    """The field of one item as a 422 names it: executions[3].language (or executions[3])."""
    return f"executions[{index}].{field}" if field else f"executions[{index}]"


def member_id(batch_id: str, index: int) -> str:
    """The id of a batch's item that brings none: the batch id and its position, so a retried
    POST with the same batch id names the same executions (and is idempotent like one execution)."""
    return f"{batch_id}-{index}"


def state_counts(states: Iterable[str]) -> dict[str, int]:
    """How many members are in each state, in a stable order (by state name)."""
    return dict(sorted(Counter(states).items()))
