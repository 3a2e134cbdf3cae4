"""The launch processor, the executor: sandbox.launches → STARTED, LogChunks, a terminal transition.

It runs each execution on a runtime backend with bounded concurrency, holds a lease on
each run and renews it on sandbox.leases, and kills a run whose cancellation it sees
on sandbox.cancellations (every executor reads every cancellation).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
from collections import OrderedDict
from collections.abc import Callable
from typing import cast

import faust
import structlog
from aiokafka import TopicPartition
from msgspec import structs

from processors.edges import Edges, bound, now_ms
from processors.metrics import ProcessorMetrics
from runtime.types import Backend, Limits, Outcome, OutputChunk, RunRequest
from streams import kafka
from streams.app import raw_topic
from streams.codec import CodecError
from streams.records import CancelRequest, ExecutionEvent, ExecutionRequest, LogChunk, RunOutcome
from streams.settings import Settings
from streams.states import State
from streams.tracing import TraceContext, Tracer, resolve

log = structlog.get_logger()
# How far back a starting executor looks for cancellations of runs it may be handed.
CANCEL_LOOKBACK_MS = 15 * 60 * 1000


def run_request(request: ExecutionRequest) -> RunRequest:
    lim = request.limits
    defaults = Limits()
    return RunRequest(
        execution_id=request.id,
        language=request.language,
        code=request.code,
        files=dict(request.files),
        stdin=request.stdin.encode(),
        args=tuple(request.args),
        limits=Limits(
            wall_time_ms=lim.wall_time_ms or defaults.wall_time_ms,
            cpu_time_ms=lim.cpu_time_ms or defaults.cpu_time_ms,
            memory_mib=lim.memory_mib or defaults.memory_mib,
            processes=lim.processes or defaults.processes,
            output_bytes=lim.output_bytes or defaults.output_bytes,
            disk_mib=lim.disk_mib or defaults.disk_mib,
        ),
        network=request.network,
    )


def run_outcome(outcome: Outcome) -> RunOutcome:
    return RunOutcome(
        limit=outcome.limit.value if outcome.limit is not None else None,
        exit_code=outcome.exit_code,
        signal=outcome.signal,
        stdout=outcome.stdout,
        stderr=outcome.stderr,
        compile_output=outcome.compile_output,
        truncated_stdout=outcome.truncated_stdout,
        truncated_stderr=outcome.truncated_stderr,
        cpu_time_ms=outcome.cpu_time_ms,
        memory_peak_kib=outcome.memory_peak_kib,
        compile_ms=outcome.compile_ms,
        run_ms=outcome.run_ms,
    )


class RecentIds:
    """A bounded set of ids, oldest forgotten first."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, execution_id: str) -> None:
        self._ids[execution_id] = None
        self._ids.move_to_end(execution_id)
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)

    def __contains__(self, execution_id: object) -> bool:
        return execution_id in self._ids


def security_events(outcome: Outcome) -> list[tuple[str, dict[str, object]]]:
    """The security events in a run's outcome: a limit hit, a seccomp kill (SIGSYS)."""
    found: list[tuple[str, dict[str, object]]] = []
    if outcome.limit is not None:
        found.append(("security_limit_hit", {"kind": outcome.limit.value}))
    if outcome.signal == signal.SIGSYS:
        found.append(("security_seccomp_kill", {"signal": "SIGSYS"}))
    return found


class Executor:
    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        backend: Backend,
        slots: int,
        *,
        metrics: ProcessorMetrics | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.backend = backend
        self.slots = slots
        self.edges = Edges(app, settings, "launch", metrics, tracer)
        self.cancelled = RecentIds()
        self.running: set[str] = set()
        # Executions whose launch this process has taken and not finished (running or about to).
        self.taken: set[str] = set()
        # The launch seqs this process took, so a launch that is sent again (the scheduler resends
        # one that no executor took within a lease term) does not run twice here. After a crash
        # it is empty on purpose: the run the dead process held is lost and may run again.
        self.launched = RecentIds()
        self._tasks: set[asyncio.Task[None]] = set()
        self._commit_wanted = asyncio.Event()
        app.agent(raw_topic(app, self.edges.names.launches), name="launch")(self._agent)
        app.task(self._watch_cancellations)
        app.task(self._commit_owned)

    async def _agent(self, stream: faust.StreamT[bytes]) -> None:
        """Take each launch as soon as a slot is free; run them side by side.

        A launch is acknowledged (so its offset can commit) only once its STARTED is on the events
        topic: from then on the run is covered by its lease, not by redelivery. Its offset is then
        committed at once rather than at the next commit interval (a rebalance in between would hand
        the started launch to another executor); launches that start during one commit share the
        next. The agent does not wait for a STARTED before it takes the next launch: faust commits
        acknowledged offsets only up to the first unacknowledged one, so an offset never commits
        ahead of a launch that has not started.
        """
        slots = asyncio.Semaphore(self.slots)
        # A stream without automatic acks (StreamT does not declare noack; the Stream it is does).
        manual = cast("faust.Stream[bytes]", stream).noack()
        async for message in manual.events():
            try:
                scheduled = ExecutionEvent.decode(message.value)
                request = scheduled.decoded_request()
                if scheduled.state is not State.SCHEDULED or request is None:
                    raise ValueError(f"a launch must be a SCHEDULED event with its request, got {scheduled.state}")
            except (CodecError, ValueError) as exc:
                await self.edges.dead_letter(message.message, f"{type(exc).__name__}: {exc}")
                message.ack()
                continue
            key = f"{scheduled.execution_id}:{scheduled.seq}"
            if key in self.launched:
                message.ack()
                continue
            if scheduled.execution_id in self.taken:
                # Another attempt of this execution runs here already (a redelivered launch after a
                # restart, raced by the retry of its expired lease): never two at once; its end ends both.
                log.warning("launch_skipped_running", id=scheduled.execution_id, seq=scheduled.seq)
                message.ack()
                continue
            self.launched.add(key)
            self.taken.add(scheduled.execution_id)
            await slots.acquire()
            parent = resolve(message.headers, request.trace_id)
            task = asyncio.create_task(
                self._launch_traced(scheduled, request, parent, functools.partial(self._owned, message), slots)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _owned(self, message: faust.types.EventT[bytes]) -> None:
        """This executor owns the launch (its STARTED is durable, or it ended before): commit it soon."""
        if message.ack():
            self._commit_wanted.set()

    async def _commit_owned(self) -> None:
        """Commit acknowledged launches as they come, one commit at a time (a faust app task)."""
        while True:
            await self._commit_wanted.wait()
            self._commit_wanted.clear()
            try:
                await self.app.consumer.commit()
            except Exception:  # a rebalance: the commit interval or the next owner's lease takes over
                log.exception("launch_commit_failed")

    async def _launch_traced(
        self,
        scheduled: ExecutionEvent,
        request: ExecutionRequest,
        parent: TraceContext,
        owned: Callable[[], None],
        slots: asyncio.Semaphore,
    ) -> None:
        try:
            span = self.edges.tracer.span("launch", parent, execution_id=scheduled.execution_id)
            with span as trace, bound(scheduled.execution_id, scheduled.tenant, trace):
                await self.launch(scheduled, request, trace, owned)
        except Exception:
            log.exception("launch_failed", id=scheduled.execution_id)
        finally:
            owned()
            self.taken.discard(scheduled.execution_id)
            slots.release()

    def _event(self, scheduled: ExecutionEvent, seq: int, state: State, **fields: object) -> ExecutionEvent:
        return ExecutionEvent(
            execution_id=scheduled.execution_id,
            seq=seq,
            state=state,
            at_ms=now_ms(),
            tenant=scheduled.tenant,
            attempt=scheduled.attempt,
            max_attempts=scheduled.max_attempts,
            executor=self.settings.executor_id,
            request=scheduled.request if state.terminal else None,
            **fields,  # type: ignore[arg-type]
        )

    async def launch(
        self,
        scheduled: ExecutionEvent,
        request: ExecutionRequest,
        trace: TraceContext | None = None,
        owned: Callable[[], None] | None = None,
    ) -> None:
        execution_id = scheduled.execution_id
        if execution_id in self.cancelled:
            await self.edges.emit(
                self._event(scheduled, scheduled.seq + 1, State.CANCELLED, reason="cancelled before it started"),
                trace=trace,
            )
            return
        started_at = now_ms()
        lease_until = started_at + self.settings.lease_ms
        started = self._event(
            scheduled, scheduled.seq + 1, State.STARTED, started_at_ms=started_at, lease_until_ms=lease_until
        )
        await self.edges.emit(started, trace=trace, wait=True)
        if owned is not None:
            owned()
        renew = asyncio.create_task(self._renew_lease(started))
        self.running.add(execution_id)
        self.edges.metrics.executor_runs.inc()
        try:
            outcome = await self.backend.run(run_request(request), on_output=self._log_sink(scheduled, trace))
        except Exception as exc:
            log.exception("backend_failed", id=execution_id)
            terminal = self._event(
                scheduled, started.seq + 1, State.ERROR, reason=f"backend failed: {exc}", started_at_ms=started_at
            )
        else:
            for name, fields in security_events(outcome):
                log.warning(name, language=request.language, executor=self.settings.executor_id, **fields)
            terminal = self._event(
                scheduled,
                started.seq + 1,
                outcome.state,
                reason=outcome.error or ("cancelled while running" if outcome.state is State.CANCELLED else None),
                started_at_ms=started_at,
                outcome=run_outcome(outcome),
            )
        finally:
            self.running.discard(execution_id)
            self.edges.metrics.executor_runs.dec()
            renew.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renew
        await self.edges.emit(terminal, trace=trace, wait=True)

    def _log_sink(self, scheduled: ExecutionEvent, trace: TraceContext | None):  # type: ignore[no-untyped-def]
        async def sink(chunk: OutputChunk) -> None:
            record = LogChunk(
                execution_id=scheduled.execution_id,
                attempt=scheduled.attempt,
                stream=chunk.stream,
                offset=chunk.offset,
                data=chunk.data,
                at_ms=now_ms(),
            )
            await self.edges.send(self.edges.logs, scheduled.execution_id, record.encode(), trace=trace)

        return sink

    async def _renew_lease(self, started: ExecutionEvent) -> None:
        interval_s = self.settings.lease_ms / 3000
        while True:
            await asyncio.sleep(interval_s)
            at = now_ms()
            renewed = structs.replace(started, at_ms=at, lease_until_ms=at + self.settings.lease_ms)
            await self.edges.send(self.edges.leases, started.execution_id, renewed.encode())

    async def _watch_cancellations(self) -> None:
        """Every executor reads every cancellation (no consumer group), from a little while back."""
        consumer = kafka.consumer(self.settings, group_id=None)
        await consumer.start()
        try:
            topic = self.edges.names.cancellations
            parts = [TopicPartition(topic, p) for p in await kafka.partitions_of(consumer, topic)]
            consumer.assign(parts)
            since = await consumer.offsets_for_times({tp: now_ms() - CANCEL_LOOKBACK_MS for tp in parts})
            for tp in parts:
                found = since.get(tp)
                if found is None:
                    await consumer.seek_to_end(tp)
                else:
                    consumer.seek(tp, found.offset)
            async for message in consumer:
                try:
                    cancel = CancelRequest.decode(message.value or b"")
                except CodecError:
                    continue  # the scheduling processor dead-letters it
                self.cancelled.add(cancel.execution_id)
                if cancel.execution_id in self.running:
                    killed = await self.backend.cancel(cancel.execution_id)
                    log.info("cancel_running", id=cancel.execution_id, killed=killed)
        finally:
            await consumer.stop()


def install(
    app: faust.App,
    settings: Settings,
    backend: Backend,
    slots: int,
    *,
    metrics: ProcessorMetrics | None = None,
    tracer: Tracer | None = None,
) -> Executor:
    return Executor(app, settings, backend, slots, metrics=metrics, tracer=tracer)
