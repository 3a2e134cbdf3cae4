"""The scheduling processor: VALIDATED → QUEUED → SCHEDULED (→ sandbox.launches), within capacity.

The queue lives in a faust table with a compacted changelog, so it survives a restart.
The policy itself is `processors.queue.Scheduler`, which does no I/O.

One scheduling worker holds the global capacity: run one active `worker scheduling`
(more may join its consumer group as standbys; each would then enforce the capacity
over the partitions it holds).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import faust
import structlog

from processors.edges import Edges, bound, now_ms
from processors.metrics import ProcessorMetrics
from processors.queue import Emit, Entry, Scheduler, dump_entry, load_entry
from streams.app import raw_topic
from streams.codec import CodecError
from streams.records import CancelRequest, ExecutionEvent, ExecutionRequest
from streams.settings import Settings
from streams.states import State
from streams.tracing import TraceContext, Tracer, resolve

log = structlog.get_logger()


def event_for(emit: Emit, at_ms: int) -> ExecutionEvent:
    entry = emit.entry
    carries_request = emit.state in (State.SCHEDULED, State.CANCELLED, State.ERROR)
    return ExecutionEvent(
        execution_id=entry.execution_id,
        seq=emit.seq,
        state=emit.state,
        at_ms=at_ms,
        tenant=entry.tenant,
        attempt=entry.attempt,
        max_attempts=entry.max_attempts,
        reason=emit.reason,
        request=entry.request if carries_request else None,
    )


def trace_id_of(entry: Entry) -> str | None:
    """The trace id in the request the entry holds (None if it holds none, or an unreadable one)."""
    if entry.request is None:
        return None
    try:
        return ExecutionRequest.decode(entry.request).trace_id
    except (CodecError, ValueError):
        return None


def install(
    app: faust.App, settings: Settings, *, metrics: ProcessorMetrics | None = None, tracer: Tracer | None = None
) -> Scheduler:
    edges = Edges(app, settings, "scheduling", metrics, tracer)
    scheduler = Scheduler(settings.capacity, settings.tenant_quota, settings.lease_ms)
    edges.metrics.watch_scheduler(scheduler)
    # The last trace position of each execution this scheduler holds, so that what it emits later
    # (when capacity frees up) continues the right trace; after a restart, from the request's trace id.
    traces: dict[str, TraceContext] = {}
    entries = app.Table("queue", key_type=str, value_type=bytes, use_partitioner=True, partitions=settings.partitions)
    loaded = False

    def ensure_loaded() -> bool:
        nonlocal loaded
        recovered = app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]
        if not loaded and recovered:
            scheduler.load([load_entry(v) for v in entries.values()], now_ms())
            loaded = True
            log.info("scheduler_loaded", entries=len(scheduler.entries), running=len(scheduler.running()))
        return loaded

    def persist(entry: Entry) -> None:
        entries[entry.execution_id] = dump_entry(entry)

    # Launches on their way: each waits for its SCHEDULED transition to be on sandbox.events, then
    # goes to sandbox.launches. The scheduler goes on meanwhile, so one run's two round trips to the
    # broker never hold up the next event (they did: ~8 ms of waiting per run, in series).
    launching: set[asyncio.Task[None]] = set()

    async def launch_after(scheduled: Awaitable[Any], execution_id: str, value: bytes, trace: TraceContext) -> None:
        try:
            await scheduled
            await edges.send(edges.launches, execution_id, value, trace=trace, wait=True)
        except Exception:
            # The entry stays SCHEDULED: when no executor has taken it within a lease term, the
            # scheduler sends the launch again (Scheduler.expire).
            log.exception("launch_send_failed", id=execution_id)

    async def carry_out(emits: list[Emit]) -> None:
        for emit in emits:
            persist(emit.entry)
            event = event_for(emit, now_ms())
            execution_id = event.execution_id
            parent = traces.get(execution_id) or TraceContext.new(trace_id_of(emit.entry))
            span = edges.tracer.span("scheduling", parent, execution_id=execution_id, state=event.state.value)
            with span as trace, bound(execution_id, event.tenant, trace):
                sent = await edges.emit(event, trace=trace)
                if emit.state is State.SCHEDULED:
                    # The SCHEDULED transition is on sandbox.events before its launch is sent.
                    task = asyncio.create_task(launch_after(sent, execution_id, event.encode(), trace))
                    launching.add(task)
                    task.add_done_callback(launching.discard)
            if emit.entry.done or event.state.terminal:
                traces.pop(execution_id, None)
            else:
                traces[execution_id] = trace

    @app.agent(raw_topic(app, edges.names.events), name="schedule")
    async def on_events(stream: faust.StreamT[bytes]) -> None:
        async for message in stream.events():
            ensure_loaded()
            event = await edges.decode(message.message, ExecutionEvent)
            if event is None:
                continue
            if event.state is State.VALIDATED:
                request = event.decoded_request()
                traces[event.execution_id] = resolve(message.headers, request.trace_id if request else None)
                await carry_out(
                    scheduler.on_validated(
                        event.execution_id,
                        seq=event.seq,
                        tenant=event.tenant,
                        priority=request.priority if request else 0,
                        max_attempts=event.max_attempts,
                        created_at_ms=request.created_at_ms if request else event.at_ms,
                        request=event.request,
                    )
                )
            elif event.state is State.STARTED:
                scheduler.on_started(event.execution_id, event.seq, event.lease_until_ms)
                if event.execution_id in scheduler.entries:
                    persist(scheduler.entries[event.execution_id])
            elif event.state.terminal and event.execution_id in scheduler.entries:
                was_done = scheduler.entries[event.execution_id].done
                emits = scheduler.on_terminal(event.execution_id, event.seq)
                if not was_done:
                    persist(scheduler.entries[event.execution_id])
                await carry_out(emits)
            if event.state.terminal:
                traces.pop(event.execution_id, None)

    @app.agent(raw_topic(app, edges.names.cancellations), name="cancel-queued")
    async def on_cancellations(stream: faust.StreamT[bytes]) -> None:
        async for message in stream.events():
            ensure_loaded()
            cancel = await edges.decode(message.message, CancelRequest)
            if cancel is None:
                continue
            await carry_out(scheduler.on_cancel(cancel.execution_id))

    @app.agent(raw_topic(app, edges.names.leases), name="leases")
    async def on_leases(stream: faust.StreamT[bytes]) -> None:
        async for message in stream.events():
            ensure_loaded()
            lease = await edges.decode(message.message, ExecutionEvent)
            if lease is None:
                continue
            if lease.lease_until_ms is not None:
                scheduler.on_lease(lease.execution_id, lease.seq, lease.lease_until_ms)

    @app.timer(interval=1.0)  # type: ignore[untyped-decorator]
    async def expire_leases() -> None:
        if ensure_loaded():
            await carry_out(scheduler.expire(now_ms()))

    return scheduler
