"""The scheduling processor: VALIDATED → QUEUED → SCHEDULED (→ sandbox.launches), within capacity.

The policy itself is `processors.queue.Scheduler`, which does no I/O. This module is its edge: an
aiokafka loop over sandbox.events, sandbox.cancellations and sandbox.leases, which takes what the
broker has in one batch and hands every record to the policy without an await in between.

It was a faust agent. Under load faust delivered the events to it one at a time through several
turns of the shared event loop (its consumer thread, then its conductor per message): while
requests kept arriving, the scheduler waited ~75% of the time for its next event with a backlog
of hundreds on the topic, every run slot stayed busy until the scheduler saw its terminal event
about a second late, and throughput fell to ~28 runs/s (bench/README.md, "Tuning notes").

The queue survives a restart in a compacted topic, `<prefix>aevatar-scheduling-queue-changelog`
(the name the faust table used): each entry is written there whenever it changes, and the entries
of the assigned partitions are read back whenever the assignment changes. Offsets are committed
only once everything their batch produced (transitions, entries, launches) is on the broker.

One scheduling worker holds the global capacity: run one active `worker scheduling` (more may join
its consumer group as standbys; each would then enforce the capacity over the partitions it holds).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import structlog
from aiokafka import ConsumerRecord

from processors.batches import BatchProcessor
from processors.edges import bound, log_transition, now_ms
from processors.metrics import ProcessorMetrics
from processors.queue import Emit, Entry, Scheduler, dump_entry, load_entry
from processors.window import IdWindow, stale_reason
from streams import kafka
from streams.codec import CodecError
from streams.records import CancelRequest, ExecutionEvent, ExecutionRequest
from streams.settings import Settings
from streams.states import State
from streams.topics import Topics
from streams.tracing import TraceContext, Tracer, resolve

if TYPE_CHECKING:
    from processors.launch import Executor

log = structlog.get_logger()
STAGE = "scheduling"
EXPIRE_INTERVAL_S = 1.0


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


def trace_id_in(request: bytes | None) -> str | None:
    """The trace id in an encoded request (a VALIDATED's, a queue entry's): None if there is none,
    or it cannot be read."""
    if request is None:
        return None
    try:
        return ExecutionRequest.decode(request).trace_id
    except (CodecError, ValueError):
        return None


async def read_entries(settings: Settings, partitions: Iterable[int]) -> list[tuple[Entry, int]]:
    """The latest entry of each execution on the given partitions of the queue topic, with its record's timestamp."""
    latest = await kafka.latest_records(settings, Topics(settings.topic_prefix).scheduler_queue, partitions)
    return [(load_entry(r.value), r.timestamp) for r in latest.values() if r.value is not None]


class Scheduling(BatchProcessor):
    stage = STAGE

    def __init__(
        self, settings: Settings, *, metrics: ProcessorMetrics | None = None, tracer: Tracer | None = None
    ) -> None:
        topics = Topics(settings.topic_prefix)
        super().__init__(settings, [topics.events, topics.cancellations, topics.leases], metrics=metrics, tracer=tracer)
        self.scheduler = Scheduler(settings.capacity, settings.tenant_quota, settings.lease_ms)
        self.metrics.watch_scheduler(self.scheduler)
        # The last trace position of each execution held here, so that what is emitted later (when
        # capacity frees up) continues the right trace; after a restart, from the request's trace id.
        self.traces: dict[str, TraceContext] = {}
        self._last_expire = time.monotonic()
        # Finished entries are kept (so that a replayed VALIDATED cannot queue them again) for the
        # dedupe window, then forgotten and deleted from the queue topic (processors/window.py).
        self.finished = IdWindow(settings.dedupe_window_s * 1000)
        # The executor in this process, which takes launches in process (processors/express.py);
        # None: launches go to sandbox.launches only.
        self.executor: Executor | None = None
        # For each execution on its way to a launch in process: the acknowledgements of what was
        # written for it so far (by validation, if it came express, and here), which the executor
        # awaits with its STARTED before the program runs.
        self._written: dict[str, list[asyncio.Future[Any]]] = {}

    async def express_validated(
        self, event: ExecutionEvent, trace: TraceContext, written: Sequence[asyncio.Future[Any]]
    ) -> bool:
        """A VALIDATED that validation in this process has just sent (`written`: its acknowledgement
        and those before it): queued now if its partition is this worker's. Its copy from the consumer
        is then a duplicate."""
        execution_id = event.execution_id

        async def queue() -> bool:
            if execution_id in self.scheduler.entries:
                return False  # its copy came through the consumer first
            if self.executor is not None:
                self._written[execution_id] = list(written)
            await self._validated(event, trace)
            return True

        return await self.take_express(self.topics.events, execution_id, queue)

    async def on_assigned(self, partitions: set[int]) -> None:
        """Rebuild the queue of exactly the assigned partitions (everything produced is on the broker)."""
        loaded = await read_entries(self.settings, partitions)
        self.scheduler.clear()
        self.scheduler.load([entry for entry, _ in loaded], now_ms())
        self.finished = IdWindow(self.settings.dedupe_window_s * 1000)
        self.finished.add_all({entry.execution_id: at_ms for entry, at_ms in loaded if entry.done}, now_ms())
        await self._forget_finished(self.finished.prune(now_ms()))
        self.traces.clear()
        self._written.clear()
        log.info(
            "scheduler_loaded",
            partitions=sorted(partitions),
            entries=len(self.scheduler.entries),
            running=len(self.scheduler.running()),
        )
        # Runs that were queued when the previous owner stopped may fit now.
        await self._carry_out(self.scheduler.fill())

    async def after_batch(self) -> None:
        if time.monotonic() - self._last_expire >= EXPIRE_INTERVAL_S:
            self._last_expire = time.monotonic()
            await self._carry_out(self.scheduler.expire(now_ms()))
        await self._forget_finished(self.finished.prune_due(now_ms()))

    async def _forget_finished(self, execution_ids: list[str]) -> None:
        """Forget entries whose dedupe window is over; delete them from the queue topic (tombstones)."""
        for execution_id in execution_ids:
            if self.scheduler.forget(execution_id):
                await self.send(self.topics.scheduler_queue, execution_id.encode(), None)

    async def handle(self, record: ConsumerRecord[bytes, bytes]) -> None:
        if record.topic == self.topics.events:
            event = await self.decode(record, ExecutionEvent)
            if event is not None:
                await self._on_event(event, record)
        elif record.topic == self.topics.cancellations:
            cancel = await self.decode(record, CancelRequest)
            if cancel is not None:
                await self._carry_out(self.scheduler.on_cancel(cancel.execution_id))
        elif record.topic == self.topics.leases:
            lease = await self.decode(record, ExecutionEvent)
            if lease is not None and lease.lease_until_ms is not None:
                self.scheduler.on_lease(lease.execution_id, lease.seq, lease.lease_until_ms)

    async def _on_event(self, event: ExecutionEvent, record: ConsumerRecord[bytes, bytes]) -> None:
        scheduler = self.scheduler
        execution_id = event.execution_id
        if event.state is State.VALIDATED:
            if execution_id not in scheduler.entries and self.finished.stale(record.timestamp, now_ms()):
                # Beyond the window a finished entry may be forgotten: queueing it could run it again.
                await self.dead_letter(record, stale_reason("VALIDATED event", self.settings.dedupe_window_s))
                return
            if execution_id not in scheduler.entries:
                await self._validated(event, resolve(record.headers, trace_id_in(event.request)))
        elif event.state is State.STARTED:
            scheduler.on_started(execution_id, event.seq, event.lease_until_ms)
            if execution_id in scheduler.entries:
                await self._persist(scheduler.entries[execution_id])
        elif event.state.terminal and execution_id in scheduler.entries:
            was_done = scheduler.entries[execution_id].done
            emits = scheduler.on_terminal(execution_id, event.seq)
            if not was_done:
                await self._persist(scheduler.entries[execution_id])
            await self._carry_out(emits)
        if event.state.terminal:
            self.traces.pop(execution_id, None)

    async def _validated(self, event: ExecutionEvent, trace: TraceContext) -> None:
        """Queue a new execution (and schedule what fits)."""
        try:
            request = event.decoded_request()
        except CodecError:
            request = None
        self.traces[event.execution_id] = trace
        await self._carry_out(
            self.scheduler.on_validated(
                event.execution_id,
                seq=event.seq,
                tenant=event.tenant,
                priority=request.priority if request else 0,
                max_attempts=event.max_attempts,
                created_at_ms=request.created_at_ms if request else event.at_ms,
                request=event.request,
            )
        )

    async def _persist(self, entry: Entry) -> asyncio.Future[Any]:
        written = await self.send(self.topics.scheduler_queue, entry.execution_id.encode(), dump_entry(entry))
        if entry.done and entry.execution_id not in self.finished:
            self.finished.add(entry.execution_id, now_ms())
        return written

    async def _launch_here(self, emit: Emit, event: ExecutionEvent, trace: TraceContext) -> bool:
        """Hand a launch to the executor in this process, if it has a free slot (processors/express.py).

        It is not written to sandbox.launches then: no other executor may take it. Should this process
        die before the run's STARTED is on the broker, the lease term of the SCHEDULED runs out and the
        launch is sent again (`Scheduler.expire`), as for a launch lost in a crash. A resent launch
        always goes to the topic.
        """
        written = self._written.pop(event.execution_id, [])
        if self.executor is None or emit.resend:
            return False
        return await self.executor.offer(event, trace, written)

    async def _carry_out(self, emits: list[Emit]) -> None:
        for emit in emits:
            entry_written = await self._persist(emit.entry)
            event = event_for(emit, now_ms())
            execution_id = event.execution_id
            parent = self.traces.get(execution_id) or TraceContext.new(trace_id_in(emit.entry.request))
            span = self.tracer.span(STAGE, parent, execution_id=execution_id, state=event.state.value)
            with span as trace, bound(execution_id, event.tenant, trace):
                encoded = event.encode()
                written = await self.send(self.topics.events, event.key, encoded, trace=trace)
                log_transition(STAGE, event)
                if self.executor is not None:
                    self._written.setdefault(execution_id, []).extend([entry_written, written])
                # The launch goes right behind its SCHEDULED, without waiting for the broker to have
                # it: the executor that takes the launch writes the same SCHEDULED again, ahead of its
                # STARTED, so no run starts unless its SCHEDULED is on the topic.
                if emit.state is State.SCHEDULED and not await self._launch_here(emit, event, trace):
                    await self.send(self.topics.launches, execution_id.encode(), encoded, trace=trace)
            if emit.entry.done or event.state.terminal:
                self._written.pop(execution_id, None)
                self.traces.pop(execution_id, None)
            else:
                self.traces[execution_id] = trace
