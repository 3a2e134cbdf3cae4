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
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata
from msgspec import structs

from processors.batches import park
from processors.edges import bound, log_transition, now_ms
from processors.judging import Judge
from processors.metrics import ProcessorMetrics
from processors.provenance import Stamper
from runtime.types import Backend, Limits, Outcome, OutputChunk, RunRequest
from streams import kafka
from streams.codec import CodecError
from streams.offsets import OffsetTracker
from streams.records import CancelRequest, ExecutionEvent, ExecutionRequest, LogChunk, RunOutcome
from streams.settings import Settings
from streams.states import State
from streams.topics import Topics
from streams.tracing import TraceContext, Tracer, resolve

log = structlog.get_logger()
Launch: TypeAlias = ConsumerRecord[bytes, bytes]  # a SCHEDULED event as sandbox.launches carries it
STAGE = "launch"
# How long partitions being taken away wait for their starting launches to start (then commit).
REVOKE_GRACE_S = 5.0
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
    """Takes launches from its consumer group as slots free up, and runs them side by side.

    A launch's offset may commit only once its STARTED is on the events topic (or it ended before
    that): from then on the run is covered by its lease, not by redelivery, so a run whose executor
    dies is retried by the scheduler when the lease expires. Owned launches are committed at once,
    one commit at a time, and launches owned during one commit share the next; an offset never
    commits ahead of a launch that has not started (`OffsetTracker`). When partitions are taken
    away, the launches of theirs that are starting get a moment to start, and their offsets commit
    before the next owner reads them.

    It was a faust agent; it is a plain aiokafka loop like validation and scheduling
    (processors/batches.py says why).
    """

    stage = STAGE

    def __init__(
        self,
        settings: Settings,
        backend: Backend,
        slots: int,
        *,
        metrics: ProcessorMetrics | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.settings = settings
        self.backend = backend
        self.slots = max(1, slots)
        self.metrics = metrics or ProcessorMetrics()
        self.tracer = tracer or Tracer("aevatar-launch")
        self.topics = Topics(settings.topic_prefix)
        self.group_id = f"{settings.topic_prefix}aevatar-{STAGE}"
        self.cancelled = RecentIds()
        self.running: set[str] = set()
        # The judged executions running here (processors/judging.py), for their cancellation.
        self.judging: dict[str, Judge] = {}
        self.stamper = Stamper(backend, settings.executor_id)  # each outcome's provenance
        # Executions whose launch this process has taken and not finished (running or about to).
        self.taken: set[str] = set()
        # The launch seqs this process took, so a launch that is sent again (the scheduler resends
        # one that no executor took within a lease term) does not run twice here. After a crash
        # it is empty on purpose: the run the dead process held is lost and may run again.
        self.launched = RecentIds()
        self._tasks: set[asyncio.Task[None]] = set()
        self._offsets: OffsetTracker[TopicPartition] = OffsetTracker()
        self._free = self.slots
        self._slot_free = asyncio.Event()
        self._slot_free.set()
        self._commit_wanted = asyncio.Event()
        self._committed: dict[TopicPartition, int] = {}
        self._producer: AIOKafkaProducer | None = None
        # A producer shared with validation and scheduling in this process (processors/express.py),
        # for a launch's SCHEDULED and STARTED only: they go to the broker in one request with what
        # those stages wrote on the run's way here. Everything else goes by this executor's own
        # producer, so that a run's output and its end never queue behind the other stages' writes.
        self.shared_producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._serving = False
        # Called with each transition this executor wrote, once the broker has it, when someone in
        # this process reads them (the gateway's view; processors/express.py).
        self.on_written: Callable[[ExecutionEvent], None] | None = None

    async def offer(
        self, scheduled: ExecutionEvent, trace: TraceContext, written: Sequence[asyncio.Future[Any]]
    ) -> bool:
        """A launch from the scheduler in this process (processors/express.py): taken if a slot is free.

        `written`: the acknowledgements of what was written on the run's way here; the program starts
        only once they and its STARTED are on the broker. False: not taken (send it to the topic).
        """
        if not self._serving:
            return False
        if self._held_here(scheduled):
            return True
        if self._free <= 0:
            return False
        try:
            request = scheduled.decoded_request()
        except (CodecError, ValueError):
            return False  # the topic's taker dead-letters it
        if scheduled.state is not State.SCHEDULED or request is None:
            return False
        self.metrics.express_handoffs.labels(STAGE).inc()
        await self._start(scheduled, request, trace, None, written)
        return True

    async def run(self) -> None:
        self._producer = kafka.producer(self.settings)
        # Only the scheduler writes launches, never in a transaction: read as written (a read_committed
        # long poll was seen answering ~350 ms late when a launch landed during it; streams/kafka.py).
        self._consumer = consumer = kafka.consumer(self.settings, group_id=self.group_id, transactional_input=False)
        consumer.subscribe([self.topics.launches], listener=_Revocations(self))
        await self._producer.start()
        await consumer.start()
        self._serving = True
        helpers = [
            asyncio.create_task(self._watch_cancellations()),
            asyncio.create_task(self._commit_loop()),
        ]
        try:
            while True:
                batch = await self._next_launches(consumer)
                for task in helpers:
                    if task.done():
                        task.result()
                for tp, records in batch.items():
                    for record in records:
                        if self._free <= 0:
                            # Launches taken in process used the slots meanwhile: read this one again later.
                            consumer.seek(tp, record.offset)
                            break
                        await self._take(tp, record)
        finally:
            self._serving = False
            for task in helpers:
                task.cancel()
            for task in list(self._tasks):
                task.cancel()
            for task in [*helpers, *self._tasks]:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await consumer.stop()
            await self._producer.stop()

    async def _next_launches(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, list[Launch]]:
        """Wait for a free slot, then fetch at most as many launches as there are free slots."""
        while True:
            await self._slot_free.wait()
            if self._free > 0:
                batch: dict[TopicPartition, list[Launch]]
                batch = await consumer.getmany(timeout_ms=500, max_records=self._free)
                return batch
            # Launches taken in process got the slots between the wake-up and now: wait again.
            self._slot_free.clear()

    async def _take(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            scheduled = ExecutionEvent.decode(record.value or b"")
            request = scheduled.decoded_request()
            if scheduled.state is not State.SCHEDULED or request is None:
                raise ValueError(f"a launch must be a SCHEDULED event with its request, got {scheduled.state}")
        except (CodecError, ValueError) as exc:
            assert self._producer is not None
            await park(
                self._producer, self.topics.deadletter, record, f"{type(exc).__name__}: {exc}", STAGE, self.metrics
            )
            self._finished_at_once(tp, record.offset)
            return
        if self._held_here(scheduled):
            self._finished_at_once(tp, record.offset)
            return
        self._offsets.take(tp, record.offset)
        owned = functools.partial(self._owned, tp, record.offset)
        await self._start(scheduled, request, resolve(record.headers, request.trace_id), owned)

    def _held_here(self, scheduled: ExecutionEvent) -> bool:
        """Whether this launch was taken here already, or another attempt of its execution runs here
        (never two at once): either way it is not taken again."""
        key = f"{scheduled.execution_id}:{scheduled.seq}"
        if key in self.launched:
            return True
        if scheduled.execution_id in self.taken:
            # Another attempt of this execution runs here already (a redelivered launch after a
            # restart, raced by the retry of its expired lease): its end ends both.
            log.warning("launch_skipped_running", id=scheduled.execution_id, seq=scheduled.seq)
            return True
        return False

    async def _start(
        self,
        scheduled: ExecutionEvent,
        request: ExecutionRequest,
        parent: TraceContext,
        owned: Callable[[], None] | None,
        written: Sequence[asyncio.Future[Any]] = (),
    ) -> None:
        """Take a slot for the launch, hand its SCHEDULED (again) and STARTED to the producer, and run
        it in a task of its own. The records are handed over before this returns, so those of launches
        taken together (a batch, an express hand-off) go to the broker in one request."""
        execution_id = scheduled.execution_id
        self.launched.add(f"{execution_id}:{scheduled.seq}")
        self.taken.add(execution_id)
        self._free -= 1
        if self._free <= 0:
            self._slot_free.clear()
        once = _Once(owned)
        trace, end_span = self.tracer.start(STAGE, parent, execution_id=execution_id)
        try:
            with bound(execution_id, scheduled.tenant, trace):
                announced = await self._announce(scheduled, trace)
        except Exception:
            log.exception("launch_failed", id=execution_id)
            end_span()
            self._release(execution_id, once)
            return
        task = asyncio.create_task(self._launch_traced(scheduled, request, trace, end_span, once, written, announced))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _release(self, execution_id: str, owned: Callable[[], None]) -> None:
        """The launch is over here (it ran, or could not start): its slot is free again."""
        owned()
        self.taken.discard(execution_id)
        self._free += 1
        self._slot_free.set()

    def _finished_at_once(self, tp: TopicPartition, offset: int) -> None:
        """A launch done with without a run (dead-lettered or skipped): its offset may commit soon."""
        self._offsets.skip(tp, offset)
        self._commit_wanted.set()

    def _owned(self, tp: TopicPartition, offset: int) -> None:
        """This executor owns the launch (its STARTED is durable, or it ended before): commit it soon."""
        self._offsets.done(tp, offset)
        self._commit_wanted.set()

    async def _commit_loop(self) -> None:
        """Commit what is owned, one commit at a time (launches owned meanwhile share the next)."""
        while True:
            await self._commit_wanted.wait()
            self._commit_wanted.clear()
            await self._commit_owned()

    async def _commit_owned(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        assert self._consumer is not None
        wanted: dict[TopicPartition, OffsetAndMetadata] = {}
        for tp in partitions if partitions is not None else self._consumer.assignment():
            offset = self._offsets.committable(tp)
            if offset is not None and offset != self._committed.get(tp):
                wanted[tp] = OffsetAndMetadata(offset, "")
        if not wanted:
            return
        try:
            await self._consumer.commit(wanted)
        except KafkaError as exc:  # a rebalance under way; what is owned commits on revocation or later
            log.info("launch_commit_skipped", error=repr(exc))
            return
        self._committed.update({tp: o.offset for tp, o in wanted.items()})

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Partitions go to another executor: let their starting launches start, then commit them."""
        deadline = time.monotonic() + REVOKE_GRACE_S
        while any(self._offsets.pending(tp) for tp in revoked) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await self._commit_owned(revoked)
        for tp in revoked:
            self._offsets.forget(tp)
            self._committed.pop(tp, None)

    async def _launch_traced(
        self,
        scheduled: ExecutionEvent,
        request: ExecutionRequest,
        trace: TraceContext,
        end_span: Callable[[], None],
        owned: Callable[[], None],
        written: Sequence[asyncio.Future[Any]],
        announced: _Announced,
    ) -> None:
        try:
            with bound(scheduled.execution_id, scheduled.tenant, trace):
                await self.launch(scheduled, request, trace, owned, written, announced)
        except Exception:
            log.exception("launch_failed", id=scheduled.execution_id)
        finally:
            end_span()
            self._release(scheduled.execution_id, owned)

    async def _send(
        self, topic: str, key: bytes, value: bytes, trace: TraceContext | None = None, *, shared: bool = False
    ) -> asyncio.Future[Any]:
        """Hand one record to the producer (`shared`: the one shared in this process, if there is one);
        the future returned resolves once the broker has it."""
        producer = (self.shared_producer if shared else None) or self._producer
        assert producer is not None
        headers = trace.headers() if trace is not None else None
        delivered: asyncio.Future[Any] = await producer.send(topic, value, key=key, headers=headers)
        return delivered

    async def _emit(
        self, event: ExecutionEvent, trace: TraceContext | None, *, shared: bool = False
    ) -> asyncio.Future[Any]:
        delivered = await self._send(self.topics.events, event.key, event.encode(), trace, shared=shared)
        log_transition(STAGE, event)
        return delivered

    async def _confirmed(
        self, event: ExecutionEvent, delivered: asyncio.Future[Any], written: Sequence[asyncio.Future[Any]] = ()
    ) -> None:
        """Return once the broker has the transition (and everything `written` before it)."""
        await asyncio.gather(delivered, *written)
        if self.on_written is not None:
            self.on_written(event)

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

    async def _announce(self, scheduled: ExecutionEvent, trace: TraceContext | None) -> _Announced:
        """Hand the launch's SCHEDULED (again) and its STARTED to the producer, or CANCELLED if it was
        cancelled already; nothing is awaited from the broker here.

        The scheduler sends a launch without waiting for its SCHEDULED to be on sandbox.events: the
        same SCHEDULED goes again here, ahead of what follows it on the same partition, so the next
        transition's acknowledgement says the SCHEDULED is there too (a second copy of a transition
        is a duplicate every reader skips, and compaction keeps one).
        """
        await self._send(self.topics.events, scheduled.key, scheduled.encode(), trace, shared=True)
        if scheduled.execution_id in self.cancelled:
            cancelled = self._event(scheduled, scheduled.seq + 1, State.CANCELLED, reason="cancelled before it started")
            return _Announced(None, await self._emit(cancelled, trace, shared=True))
        started_at = now_ms()
        started = self._event(
            scheduled,
            scheduled.seq + 1,
            State.STARTED,
            started_at_ms=started_at,
            lease_until_ms=started_at + self.settings.lease_ms,
        )
        return _Announced(started, await self._emit(started, trace, shared=True))

    async def launch(
        self,
        scheduled: ExecutionEvent,
        request: ExecutionRequest,
        trace: TraceContext | None = None,
        owned: Callable[[], None] | None = None,
        written: Sequence[asyncio.Future[Any]] = (),
        announced: _Announced | None = None,
    ) -> None:
        """Run one launch: SCHEDULED again and STARTED (unless `announced` already), the program once
        they and everything `written` on its way here are on the broker, then its terminal transition."""
        execution_id = scheduled.execution_id
        if announced is None:
            announced = await self._announce(scheduled, trace)
        started = announced.started
        if started is None:
            return  # cancelled before it started
        await self._confirmed(started, announced.delivered, written)
        if owned is not None:
            owned()
        started_at = started.started_at_ms
        if execution_id in self.cancelled:
            # Its cancellation came while the STARTED was on its way (the backend had no run to kill).
            cancelled = self._event(
                scheduled, started.seq + 1, State.CANCELLED, reason="cancelled before it ran", started_at_ms=started_at
            )
            await self._confirmed(cancelled, await self._emit(cancelled, trace))
            return
        renew = asyncio.create_task(self._renew_lease(started))
        self.running.add(execution_id)
        self.metrics.executor_runs.inc()
        try:
            if request.tests:
                judge = Judge(self.backend, request, run_request(request), concurrency=self.settings.tenant_quota)
                self.judging[execution_id] = judge
                judged = await judge.run()
            else:
                outcome = await self.backend.run(run_request(request), on_output=self._log_sink(scheduled, trace))
        except Exception as exc:
            log.exception("backend_failed", id=execution_id)
            terminal = self._event(
                scheduled, started.seq + 1, State.ERROR, reason=f"backend failed: {exc}", started_at_ms=started_at
            )
        else:
            if request.tests:
                # Every case's verdict travels in the terminal transition (processors/judging.py).
                terminal = self._event(
                    scheduled,
                    started.seq + 1,
                    judged.state,
                    reason=judged.reason,
                    started_at_ms=started_at,
                    outcome=judged.outcome,
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
            self.judging.pop(execution_id, None)
            self.running.discard(execution_id)
            self.metrics.executor_runs.dec()
            renew.cancel()
        terminal = await self.stamper.stamp(terminal, run_request(request))
        try:
            # The terminal transition goes to the producer before anything else gets the loop.
            await self._confirmed(terminal, await self._emit(terminal, trace))
        finally:
            with contextlib.suppress(asyncio.CancelledError):
                await renew

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
            await self._send(self.topics.logs, scheduled.execution_id.encode(), record.encode(), trace)

        return sink

    async def _renew_lease(self, started: ExecutionEvent) -> None:
        interval_s = self.settings.lease_ms / 3000
        while True:
            await asyncio.sleep(interval_s)
            at = now_ms()
            renewed = structs.replace(started, at_ms=at, lease_until_ms=at + self.settings.lease_ms)
            await self._send(self.topics.leases, started.execution_id.encode(), renewed.encode())

    async def _watch_cancellations(self) -> None:
        """Every executor reads every cancellation (no consumer group), from a little while back."""
        consumer = kafka.consumer(self.settings, group_id=None)
        await consumer.start()
        try:
            topic = self.topics.cancellations
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
                judge = self.judging.get(cancel.execution_id)
                if judge is not None:
                    killed = await judge.cancel()
                    log.info("cancel_running", id=cancel.execution_id, killed=killed)
                elif cancel.execution_id in self.running:
                    killed = await self.backend.cancel(cancel.execution_id)
                    log.info("cancel_running", id=cancel.execution_id, killed=killed)
        finally:
            await consumer.stop()


@dataclass(frozen=True, slots=True)
class _Announced:
    """A launch's STARTED handed to the producer (None: it was cancelled before it started, and its
    CANCELLED was), with the acknowledgement of that transition."""

    started: ExecutionEvent | None
    delivered: asyncio.Future[Any]


class _Once:
    """Calls its function the first time it is called, and never again."""

    def __init__(self, fn: Callable[[], None] | None) -> None:
        self._fn = fn

    def __call__(self) -> None:
        fn, self._fn = self._fn, None
        if fn is not None:
            fn()


class _Revocations(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self.executor.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        log.info("launch_assigned", partitions=sorted(tp.partition for tp in assigned))
