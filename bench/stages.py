"""Where the time of one execution goes: the medians of each hop, from the audit trail's own timestamps.

Every transition on sandbox.events carries `at_ms` (the wall clock of the processor that made it),
and the load generators record the wall clock when they sent a request and when its result reached
them. The hops of one execution are the differences between consecutive points; the table is the
median of each hop over a phase's executions (so the hops need not add up to the median total).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bench.stats import percentile
from streams import kafka
from streams.records import ExecutionEvent
from streams.settings import Settings
from streams.topics import Topics

# (name, from point, to point); "sent", "end" (the first terminal event) and "received" are not states.
HOPS: tuple[tuple[str, str, str], ...] = (
    ("client → REQUESTED (validation takes the request)", "sent", "REQUESTED"),
    ("REQUESTED → VALIDATED", "REQUESTED", "VALIDATED"),
    ("VALIDATED → QUEUED (the scheduler takes it)", "VALIDATED", "QUEUED"),
    ("QUEUED → SCHEDULED", "QUEUED", "SCHEDULED"),
    ("SCHEDULED → STARTED (an executor takes the launch)", "SCHEDULED", "STARTED"),
    ("STARTED → terminal (its ack, then the backend's run)", "STARTED", "end"),
    ("terminal → result at the client (its ack, or the completion txn)", "end", "received"),
    ("total", "sent", "received"),
)


def points(events: Iterable[ExecutionEvent]) -> dict[str, dict[str, int]]:
    """Per execution: the first `at_ms` of each state, and of its first terminal state as "end"."""
    out: dict[str, dict[str, int]] = {}
    for event in events:
        seen = out.setdefault(event.execution_id, {})
        seen.setdefault(event.state.value, event.at_ms)
        if event.state.terminal:
            seen.setdefault("end", event.at_ms)
    return out


def hop_medians(
    by_id: Mapping[str, Mapping[str, int]], client: Mapping[str, tuple[int, int]]
) -> dict[str, dict[str, Any]]:
    """{hop: {"p50_ms", "p95_ms", "n"}} over the executions in `client` ({id: (sent_ms, received_ms)})."""
    out: dict[str, dict[str, Any]] = {}
    for name, start, stop in HOPS:
        deltas: list[float] = []
        for execution_id, (sent_ms, received_ms) in client.items():
            pts = {**by_id.get(execution_id, {}), "sent": sent_ms, "received": received_ms}
            if start in pts and stop in pts:
                deltas.append(float(pts[stop] - pts[start]))
        out[name] = {"p50_ms": percentile(deltas, 50), "p95_ms": percentile(deltas, 95), "n": len(deltas)}
    return out


async def breakdown(settings: Settings, client: Mapping[str, tuple[int, int]]) -> dict[str, dict[str, Any]]:
    """Read sandbox.events to its end and the hops of the executions in `client`."""
    records = await kafka.read_to_end(settings, Topics(settings.topic_prefix).events)
    wanted = set(client)
    events: list[ExecutionEvent] = []
    for record in records:
        if record.value is None or record.key is None:
            continue
        if record.key.decode(errors="replace").split(":", 1)[0] not in wanted:
            continue
        events.append(ExecutionEvent.decode(record.value))
    return hop_medians(points(events), client)


def table(stages: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """A Markdown table: one row per hop, one p50 column per phase."""
    phases: Sequence[str] = list(stages)
    rows = ["| hop (p50 ms) | " + " | ".join(phases) + " |", "|---|" + "---:|" * len(phases)]
    for name, _, _ in HOPS:
        cells = []
        for phase in phases:
            value = stages[phase].get(name, {}).get("p50_ms")
            cells.append("-" if value is None or value != value else f"{value:.0f}")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)
