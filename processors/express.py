"""The express lane: records handed straight to the next stage when stages share a process.

The embedded default (`aevatar-sandbox up`, `worker all`) runs the gateway, every processor and
the executor in one process. Without this, each stage writes a record to Kafka and the next one
fetches it back: five broker trips in series per run, 2-3 ms each on an idle machine. With it, a
stage that writes a record the next stage *in this process* would consume also hands it over at
once:

    gateway ──request──► validation ──VALIDATED──► scheduling ──launch──► executor ─┐
            (at once)               (at once)                 (in a free slot)         │
    gateway's view ◄──STARTED, terminal (after their ack)─────────────────────────────┤
    completion ◄──terminal (after its ack, while the run's lease holds, no other run here)┘

What does not change:
- Everything is written to Kafka as before (the request, every transition, the queue entries), in
  the same order, so the audit trail and every other reader see the same records. The one record
  not written is a launch the executor here takes: no other executor may take it, and a launch
  lost with this process is sent again when its SCHEDULED's lease term runs out
  (`Scheduler.expire`), as a launch lost in a crash always is.
- A stage takes an express record only for a partition its consumer group gave it, between its
  batches (`BatchProcessor.take_express`). The record's copy comes through its consumer later and
  is skipped like any duplicate (validation: seen ids; scheduling: its queue entries).
- No program starts before everything written on its way is on the broker: the executor awaits
  the acknowledgements of the request's transitions and the queue's writes together with its
  STARTED (`Executor.offer`), where through Kafka each stage read only what was already there.
- The completion writes an express result with the shared producer, as a plain idempotent write
  outside any transaction (processors/completion.py says why that keeps one result per execution,
  and what it gives up). Only when no other run is going on in the executor here: under load the
  completion's loop commits the results that arrive together in one transaction.
- A stage whose express work fails stops as if its own loop had failed.

`AEVATAR_EXPRESS=false` sends every hand-off through the broker. `sandbox_express_handoffs_total`
counts them by the stage that took them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaProducer, ConsumerRecord

from streams.records import ExecutionEvent

if TYPE_CHECKING:
    from processors.completion import Completion
    from processors.launch import Executor
    from processors.scheduling import Scheduling
    from processors.validation import Validation


class Express:
    """The stages of this process that take records in process; `connect` fills it in."""

    def __init__(self) -> None:
        self.validation: Validation | None = None
        self.producer: AIOKafkaProducer | None = None  # the one the stages here share
        self.view: Callable[[ExecutionEvent], object] | None = None  # the gateway's, when it runs here
        self.completion: Completion | None = None
        self.executor: Executor | None = None
        self._handoffs: set[asyncio.Task[bool]] = set()

    async def written(self, record: ConsumerRecord[bytes, bytes], delivered: asyncio.Future[Any]) -> None:
        """A record the gateway here has just handed to the producer (`delivered`: its acknowledgement,
        which the program's start waits for), offered to the validation stage here if there is one."""
        if self.validation is not None:
            await self.validation.express(record, [delivered])

    def transition_written(self, event: ExecutionEvent) -> None:
        """A transition the executor here wrote, now on the broker: the gateway's view folds it at once,
        and the completion here, if any, commits its result (in a task of its own) unless other runs
        are going on."""
        if self.view is not None:
            self.view(event)
        idle = self.executor is not None and not self.executor.running
        if self.completion is not None and event.state.terminal and idle:
            task = asyncio.create_task(self.completion.express(event))
            self._handoffs.add(task)
            task.add_done_callback(self._handoffs.discard)


def connect(
    express: Express | None,
    validation: Validation | None,
    scheduling: Scheduling | None,
    executor: Executor | None,
    producer: AIOKafkaProducer | None = None,
    completion: Completion | None = None,
) -> None:
    """Link the stages that run in this process, each to the next one that does.

    `producer`, shared by those stages (started and stopped by the caller): what one express chain
    writes then goes to the broker in one request, so one acknowledgement covers the whole way from
    the request to STARTED.
    """
    for stage in (validation, scheduling, executor):
        if stage is not None and producer is not None:
            stage.shared_producer = producer
    if scheduling is not None:
        scheduling.executor = executor
    if validation is not None:
        validation.next_stage = scheduling
    if express is not None:
        express.validation = validation
        express.producer = producer
        express.completion = completion
        express.executor = executor
        if completion is not None and executor is not None and producer is not None:
            completion.express_producer = producer  # its consumer then fetches in batches (processors/completion.py)
        if executor is not None:
            executor.on_written = express.transition_written
