"""The executor's own decisions around a run, with its broker edge replaced: no Kafka, no sandbox."""

from __future__ import annotations

from typing import Any

from processors.launch import Executor
from streams.client import new_request
from streams.records import ExecutionEvent
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


def _executor(backend: NoRunBackend) -> tuple[Executor, list[ExecutionEvent]]:
    executor = Executor(Settings(topic_prefix="unit."), backend, 1)  # type: ignore[arg-type]
    emitted: list[ExecutionEvent] = []

    async def emit(event: ExecutionEvent, trace: TraceContext | None, *, wait: bool = False) -> None:
        emitted.append(event)
        if event.state is State.STARTED:
            executor.cancelled.add(event.execution_id)  # the cancellation lands while STARTED is sent

    async def send(topic: str, key: bytes, value: bytes, trace: TraceContext | None = None, **_: Any) -> None:
        assert topic == executor.topics.events
        emitted.append(ExecutionEvent.decode(value))

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
