"""The express lane's own decisions (processors/express.py), with the broker edge stubbed: no Kafka.

The hand-offs themselves run against the real broker and sandboxes in test_express.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import TopicPartition

from processors.queue import Emit, Entry
from processors.scheduling import Scheduling
from streams.client import new_request
from streams.kafka import partition_for
from streams.records import ExecutionEvent
from streams.settings import Settings
from streams.states import State
from streams.tracing import TraceContext

SETTINGS = Settings(topic_prefix="unit.")
EVENTS = "unit.sandbox.events"


class FourPartitions:
    """The one thing `owns` asks of the consumer."""

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0, 1, 2, 3}


class OfferRecorder:
    """An executor that takes every launch offered and records it, with what it must wait for."""

    def __init__(self) -> None:
        self.offers: list[tuple[ExecutionEvent, list[asyncio.Future[Any]]]] = []

    async def offer(self, scheduled: ExecutionEvent, trace: TraceContext, written: list[asyncio.Future[Any]]) -> bool:
        self.offers.append((scheduled, list(written)))
        return True


def _scheduling(*partitions: int) -> Scheduling:
    scheduling = Scheduling(SETTINGS)
    scheduling._consumer = FourPartitions()  # type: ignore[assignment]
    scheduling._assigned = frozenset(TopicPartition(EVENTS, p) for p in partitions)
    return scheduling


def _id_on(partition: int) -> str:
    return next(f"x{n}" for n in range(1000) if partition_for(f"x{n}", 4) == partition)


def test_a_worker_owns_exactly_the_executions_of_its_assigned_partitions() -> None:
    scheduling = _scheduling(1, 3)
    assert scheduling.owns(EVENTS, _id_on(1)) and scheduling.owns(EVENTS, _id_on(3))
    assert not scheduling.owns(EVENTS, _id_on(0)) and not scheduling.owns(EVENTS, _id_on(2))
    scheduling._assigned = None  # rebuilding its state for a new assignment: takes nothing
    assert not scheduling.owns(EVENTS, _id_on(1))


async def test_express_work_is_counted_only_when_taken_and_a_failure_stops_the_worker() -> None:
    scheduling = _scheduling(0, 1, 2, 3)
    counted = scheduling.metrics.express_handoffs.labels("scheduling")

    async def took() -> bool:
        return True

    async def had_it() -> bool:
        return False

    async def broke() -> bool:
        raise RuntimeError("half-changed state")

    assert await scheduling.take_express(EVENTS, "a", took)
    assert not await scheduling.take_express(EVENTS, "a", had_it)
    assert counted._value.get() == 1
    assert not await scheduling.take_express(EVENTS, "b", broke)
    assert isinstance(scheduling._failed, RuntimeError)
    assert not await scheduling.take_express(EVENTS, "c", took)  # stopped: nothing more is taken here


async def test_a_validated_handed_over_is_queued_and_its_launch_waits_for_everything_written() -> None:
    scheduling = _scheduling(0, 1, 2, 3)
    executor = OfferRecorder()
    scheduling.executor = executor  # type: ignore[assignment]
    sent: list[asyncio.Future[Any]] = []

    async def send(*_: Any, **__: Any) -> asyncio.Future[Any]:
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        sent.append(done)
        return done

    scheduling.send = send  # type: ignore[method-assign]
    request = new_request("python", "print(1)")
    validated = ExecutionEvent(
        execution_id=request.id, seq=1, state=State.VALIDATED, at_ms=1, tenant="t", request=request.encode()
    )
    validation_writes: list[asyncio.Future[Any]] = [asyncio.get_running_loop().create_future()]

    assert await scheduling.express_validated(validated, TraceContext.new(), validation_writes)
    [(scheduled, written)] = executor.offers
    assert (scheduled.state, scheduled.seq) == (State.SCHEDULED, 3)
    # The launch waits for validation's writes and for every write of the scheduler for it (the
    # queue entry and the transition, for QUEUED and for SCHEDULED); none went to sandbox.launches.
    assert written == validation_writes + sent and len(sent) == 4
    # Its copy through the consumer changes nothing.
    assert not await scheduling.express_validated(validated, TraceContext.new(), [])
    assert len(executor.offers) == 1


@pytest.mark.parametrize("resend", [True, False])
async def test_a_resent_launch_goes_to_the_topic_never_in_process(resend: bool) -> None:
    scheduling = _scheduling(0, 1, 2, 3)
    executor = OfferRecorder()
    scheduling.executor = executor  # type: ignore[assignment]
    entry = Entry(execution_id="e", tenant="t", priority=0, arrival=0, state=State.SCHEDULED, seq=3)
    event = ExecutionEvent(execution_id="e", seq=3, state=State.SCHEDULED, at_ms=1, tenant="t")

    taken = await scheduling._launch_here(Emit(entry, State.SCHEDULED, 3, resend=resend), event, TraceContext.new())

    assert taken is not resend and len(executor.offers) == (0 if resend else 1)


# -- the completion's express lane -----------------------------------------------------------------
def _terminal(state: State = State.SUCCEEDED, started_at_ms: int | None = 1_000_000) -> ExecutionEvent:
    return ExecutionEvent(
        execution_id="e1", seq=6, state=state, at_ms=1_000_500, tenant="t", attempt=1, max_attempts=1,
        started_at_ms=started_at_ms,
    )  # fmt: skip


def test_the_completion_takes_only_a_terminal_transition_inside_its_runs_lease() -> None:
    from processors.completion import EXPRESS_LEASE_MARGIN_MS, first_terminal_for_sure

    lease_ms, started = 15_000, 1_000_000
    last_sure = started + lease_ms - EXPRESS_LEASE_MARGIN_MS - 1
    assert first_terminal_for_sure(_terminal(), started + 5, lease_ms)
    assert first_terminal_for_sure(_terminal(), last_sure, lease_ms)
    # From there on the scheduler (on a clock up to the margin ahead) may have ended or retried it.
    assert not first_terminal_for_sure(_terminal(), last_sure + 1, lease_ms)
    # Never started (cancelled before it started), or not terminal: never taken.
    assert not first_terminal_for_sure(_terminal(State.CANCELLED, started_at_ms=None), started, lease_ms)
    assert not first_terminal_for_sure(_terminal(State.STARTED), started + 5, lease_ms)


class CompletionRecorder:
    def __init__(self) -> None:
        self.taken: list[ExecutionEvent] = []

    async def express(self, event: ExecutionEvent) -> bool:
        self.taken.append(event)
        return True


class Running:
    def __init__(self, *ids: str) -> None:
        self.running = set(ids)


async def test_the_completion_is_handed_terminal_transitions_only_while_no_other_run_goes_on() -> None:
    from processors.express import Express

    express, completion = Express(), CompletionRecorder()
    seen: list[ExecutionEvent] = []
    express.completion, express.view = completion, seen.append  # type: ignore[assignment]
    express.executor = Running()  # type: ignore[assignment]
    started = _terminal(State.STARTED)
    express.transition_written(started)
    express.transition_written(_terminal())
    express.executor = Running("another")  # type: ignore[assignment]
    express.transition_written(_terminal(State.FAILED))  # under load: left to the completion's batches
    await asyncio.sleep(0)
    assert [e.state for e in completion.taken] == [State.SUCCEEDED]
    assert [e.state for e in seen] == [State.STARTED, State.SUCCEEDED, State.FAILED]  # the view sees all


async def test_an_express_failure_stops_the_completion_before_its_next_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whether a failed express write landed is unknown: a batch fetched meanwhile must not be
    processed (it could write the same result again); the loop stops with the failure instead."""
    from processors import completion
    from streams import kafka

    stage = completion.Completion(SETTINGS)
    failure = RuntimeError("the express write failed")
    transactions: list[str] = []

    class Consumer:
        async def start(self) -> None: ...

        async def stop(self) -> None: ...

        def subscribe(self, topics: list[str]) -> None: ...

        def assignment(self) -> set[TopicPartition]:
            return {TopicPartition(EVENTS, 0)}

        async def getmany(self, **_: Any) -> dict[TopicPartition, list[Any]]:
            fetched.set()
            return {TopicPartition(EVENTS, 0): [object()]}

    class Producer:
        async def start(self) -> None: ...

        async def stop(self) -> None: ...

        def transaction(self) -> Any:
            transactions.append("begun")
            raise AssertionError("a transaction after the express failure")

    monkeypatch.setattr(kafka, "consumer", lambda *a, **k: Consumer())
    monkeypatch.setattr(kafka, "producer", lambda *a, **k: Producer())
    fetched = asyncio.Event()
    async with stage._lock:  # an express hand-off holds the lock ...
        loop = asyncio.create_task(stage.run())
        await fetched.wait()  # ... while the loop's batch comes in and waits for it
        await asyncio.sleep(0)
        stage._failed = failure  # ... and then fails
    with pytest.raises(RuntimeError, match="the express write failed"):
        await loop
    assert transactions == []
