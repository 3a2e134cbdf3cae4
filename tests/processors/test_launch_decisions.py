"""The executor's own decisions around a run, with its broker edge replaced: no Kafka, no sandbox."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError

from processors.launch import Executor
from runtime.types import Outcome
from streams.client import new_request
from streams.records import ExecutionEvent, ExecutionRequest
from streams.settings import Settings
from streams.states import State
from streams.tracing import TraceContext


class NoRunBackend:
    """A backend that records what it was asked to run (and runs nothing)."""

    def __init__(self) -> None:
        self.runs: list[str] = []

    async def run(self, request: Any, on_output: Any = None) -> Any:
        self.runs.append(request.execution_id)
        raise AssertionError("this run should not have reached the backend")


def _acked() -> asyncio.Future[Any]:
    done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    done.set_result(None)
    return done


def _executor(backend: NoRunBackend, *, cancel_on_started: bool = True) -> tuple[Executor, list[ExecutionEvent]]:
    executor = Executor(Settings(topic_prefix="unit."), backend, 1)  # type: ignore[arg-type]
    emitted: list[ExecutionEvent] = []

    async def emit(event: ExecutionEvent, trace: TraceContext | None, **_: Any) -> asyncio.Future[Any]:
        emitted.append(event)
        if event.state is State.STARTED and cancel_on_started:
            executor.cancelled.add(event.execution_id)  # the cancellation lands while STARTED is sent
        return _acked()

    async def send(
        topic: str, key: bytes, value: bytes, trace: TraceContext | None = None, **_: Any
    ) -> asyncio.Future[Any]:
        assert topic == executor.topics.events
        emitted.append(ExecutionEvent.decode(value))
        return _acked()

    executor._emit = emit  # type: ignore[method-assign]
    executor._send = send  # type: ignore[method-assign]
    return executor, emitted


async def test_a_cancel_that_lands_while_started_is_sent_ends_the_run_before_it_runs() -> None:
    request = new_request("python", "print('never')")
    scheduled = ExecutionEvent(
        execution_id=request.id, seq=3, state=State.SCHEDULED, at_ms=1, tenant="t", attempt=1, request=request.encode()
    )
    backend = NoRunBackend()
    executor, emitted = _executor(backend)
    owned: list[bool] = []

    await executor.launch(scheduled, request, None, lambda: owned.append(True))

    # The launch's SCHEDULED goes again ahead of the STARTED (the scheduler did not wait for its own).
    assert [(e.state, e.seq) for e in emitted] == [(State.SCHEDULED, 3), (State.STARTED, 4), (State.CANCELLED, 5)]
    assert backend.runs == [] and owned == [True]
    assert request.id not in executor.running


class RecordingBackend:
    """A backend that runs nothing but records what it was asked to run, and says it succeeded."""

    def __init__(self) -> None:
        self.runs: list[str] = []

    async def run(self, request: Any, on_output: Any = None) -> Outcome:
        self.runs.append(request.execution_id)
        return Outcome(State.SUCCEEDED, None, 0, None, b"", b"", b"", False, False, 0, 0, 0, 0)


def _scheduled() -> tuple[ExecutionEvent, ExecutionRequest]:
    request = new_request("python", "print('hi')")
    scheduled = ExecutionEvent(
        execution_id=request.id, seq=3, state=State.SCHEDULED, at_ms=1, tenant="t", attempt=1, request=request.encode()
    )
    return scheduled, request


async def test_a_launch_handed_over_in_process_runs_only_once_what_was_written_before_it_is_on_the_broker() -> None:
    backend = RecordingBackend()
    executor, emitted = _executor(backend, cancel_on_started=False)  # type: ignore[arg-type]
    scheduled, request = _scheduled()
    written: asyncio.Future[Any] = asyncio.get_running_loop().create_future()  # e.g. the VALIDATED, not acked yet

    run = asyncio.create_task(executor.launch(scheduled, request, None, None, [written]))
    await asyncio.sleep(0.05)
    assert [e.state for e in emitted] == [State.SCHEDULED, State.STARTED] and backend.runs == []
    written.set_result(None)
    await asyncio.wait_for(run, 5)
    assert backend.runs == [request.id]
    assert [e.state for e in emitted] == [State.SCHEDULED, State.STARTED, State.SUCCEEDED]


async def test_a_launch_whose_earlier_writes_failed_never_runs() -> None:
    backend = RecordingBackend()
    executor, emitted = _executor(backend, cancel_on_started=False)  # type: ignore[arg-type]
    scheduled, request = _scheduled()
    written: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    written.set_exception(KafkaTimeoutError())

    with pytest.raises(KafkaTimeoutError):
        await executor.launch(scheduled, request, None, None, [written])
    assert backend.runs == []
    assert [e.state for e in emitted] == [State.SCHEDULED, State.STARTED]  # no terminal: its lease decides


async def test_offer_takes_a_launch_only_while_serving_with_a_free_slot() -> None:
    backend = RecordingBackend()
    executor, _ = _executor(backend, cancel_on_started=False)  # type: ignore[arg-type]
    scheduled, _ = _scheduled()
    trace = TraceContext.new()

    assert not await executor.offer(scheduled, trace, [])  # not serving yet: send it to the topic
    executor._serving = True
    executor._free = 0
    assert not await executor.offer(scheduled, trace, [])  # no free slot
    executor._free = 1
    assert await executor.offer(scheduled, trace, [])
    assert scheduled.execution_id in executor.taken
    assert await executor.offer(scheduled, trace, [])  # the same launch again: taken already, not twice
    await asyncio.gather(*executor._tasks)
    assert backend.runs == [scheduled.execution_id] and executor._free == 1


class CountingConsumer:
    """The one call the executor's fetch makes: records how many launches it asked for."""

    def __init__(self) -> None:
        self.asked: list[int] = []

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[Any, Any]:
        assert max_records > 0  # aiokafka refuses 0
        self.asked.append(max_records)
        return {}


async def test_launches_are_fetched_only_while_a_slot_is_free() -> None:
    # The slot freed by a finished run went to a launch taken in process before the executor's loop
    # came round: it must wait again, not ask the broker for 0 launches (which raises).
    executor, _ = _executor(RecordingBackend(), cancel_on_started=False)  # type: ignore[arg-type]
    consumer = CountingConsumer()
    executor._free = 0
    executor._slot_free.set()

    fetch = asyncio.create_task(executor._next_launches(consumer))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    assert not fetch.done() and consumer.asked == [] and not executor._slot_free.is_set()
    executor._free = 2
    executor._slot_free.set()
    assert await asyncio.wait_for(fetch, 5) == {} and consumer.asked == [2]
