"""The validation processor: sandbox.requests → REQUESTED, then VALIDATED or REJECTED."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import structlog
from aiokafka import ConsumerRecord
from msgspec import structs

from processors.batches import BatchProcessor
from processors.edges import bound, log_transition, now_ms
from processors.metrics import ProcessorMetrics
from processors.policy import Policy
from processors.rules import Rejection, validate
from processors.window import IdWindow, stale_reason
from streams import kafka
from streams.codec import CodecError
from streams.records import ExecutionEvent, ExecutionRequest
from streams.settings import Settings
from streams.states import State
from streams.topics import Topics
from streams.tracing import Tracer, resolve

if TYPE_CHECKING:
    from processors.scheduling import Scheduling

log = structlog.get_logger()
# Rejections by the static policy (as opposed to a malformed request): security events.
POLICY_CODES = frozenset({"banned_import", "network_not_allowed", "limit_above_maximum"})


def request_events(
    raw: bytes, request: ExecutionRequest, verdict: ExecutionRequest | Rejection, at_ms: int
) -> list[ExecutionEvent]:
    """The two transitions a request produces: REQUESTED, then VALIDATED (normalized) or REJECTED."""
    requested = ExecutionEvent(
        execution_id=request.id, seq=0, state=State.REQUESTED, at_ms=at_ms, tenant=request.tenant, request=raw
    )
    if isinstance(verdict, Rejection):
        second = ExecutionEvent(
            execution_id=request.id,
            seq=1,
            state=State.REJECTED,
            at_ms=at_ms,
            tenant=request.tenant,
            reason=f"{verdict.code}: {verdict.message}",
            field=verdict.field,
            request=raw,
        )
    else:
        second = ExecutionEvent(
            execution_id=request.id,
            seq=1,
            state=State.VALIDATED,
            at_ms=at_ms,
            tenant=request.tenant,
            max_attempts=verdict.max_attempts or 1,
            request=verdict.encode(),
        )
    return [requested, second]


async def read_seen(settings: Settings, partitions: Iterable[int]) -> IdWindow:
    """The execution ids marked within the dedupe window on the given partitions of the seen-ids topic."""
    seen = IdWindow(settings.dedupe_window_s * 1000)
    topic = Topics(settings.topic_prefix).validation_seen
    marks = await kafka.latest_records(settings, topic, partitions, since_ms=now_ms() - seen.window_ms)
    seen.add_all({execution_id: record.timestamp for execution_id, record in marks.items()}, now_ms())
    return seen


class Validation(BatchProcessor):
    """sandbox.requests → REQUESTED, then VALIDATED or REJECTED; each execution id once.

    An id is marked on the compacted seen-ids topic only once its transitions are on the broker,
    and the marks of the assigned partitions are read back whenever the assignment changes.
    """

    stage = "validation"

    def __init__(
        self,
        settings: Settings,
        policy: Policy,
        languages: Collection[str],
        *,
        metrics: ProcessorMetrics | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        super().__init__(settings, [Topics(settings.topic_prefix).requests], metrics=metrics, tracer=tracer)
        self.policy = policy
        self.languages = languages
        self.seen = IdWindow(settings.dedupe_window_s * 1000)
        # The scheduling worker in this process, which takes VALIDATED transitions in process
        # (processors/express.py); None: it reads them back from sandbox.events.
        self.next_stage: Scheduling | None = None

    async def express(self, record: ConsumerRecord[bytes, bytes], written: Sequence[asyncio.Future[Any]]) -> bool:
        """A request the gateway in this process has just handed to the producer (`written`: its
        acknowledgement): handled now if its partition is this worker's; its copy from the consumer
        is then skipped as seen."""
        execution_id = (record.key or b"").decode()
        if record.topic not in self.inputs:
            return False

        async def validate_now() -> bool:
            if execution_id in self.seen:
                return False  # its copy came through the consumer first
            await self.handle(record, written)
            return True

        return await self.take_express(record.topic, execution_id, validate_now)

    async def on_assigned(self, partitions: set[int]) -> None:
        self.seen = await read_seen(self.settings, partitions)
        log.info("validation_assigned", partitions=sorted(partitions), seen=len(self.seen))

    async def after_batch(self) -> None:
        """Forget the ids taken longer ago than the dedupe window."""
        self.seen.prune_due(now_ms())

    async def handle(self, record: ConsumerRecord[bytes, bytes], written: Sequence[asyncio.Future[Any]] = ()) -> None:
        """`written`: acknowledgements that what follows from this request must wait for (an express
        request's own)."""
        raw = record.value or b""
        if self.seen.stale(record.timestamp, now_ms()):
            # Beyond the window its id may be forgotten: running it could run a request a second time.
            await self.dead_letter(record, stale_reason("request", self.settings.dedupe_window_s))
            return
        try:
            request = ExecutionRequest.decode(raw)
        except CodecError as exc:
            await self.dead_letter(record, f"{type(exc).__name__}: {exc}")
            return
        except Exception as exc:
            await self.dead_letter(record, f"invalid ExecutionRequest: {exc}")
            return
        if request.id in self.seen:
            return  # idempotency: this id already ran or runs
        self.seen.add(request.id, now_ms())  # when it was taken (a producer's timestamp may lie)
        parent = resolve(record.headers, request.trace_id)
        with (
            self.tracer.span(self.stage, parent, execution_id=request.id) as trace,
            bound(request.id, request.tenant, trace),
        ):
            started = time.perf_counter()
            at = now_ms()
            if not request.created_at_ms or request.trace_id != trace.trace_id:
                request = structs.replace(request, created_at_ms=request.created_at_ms or at, trace_id=trace.trace_id)
            verdict = validate(request, self.policy, self.languages)
            if isinstance(verdict, Rejection) and verdict.code in POLICY_CODES:
                log.warning("security_policy_rejected", code=verdict.code, field=verdict.field)
            sent = []
            events = request_events(raw, request, verdict, at)
            for event in events:
                sent.append(await self.send(self.topics.events, event.key, event.encode(), trace=trace))
                log_transition(self.stage, event)
            # The mark goes out once both transitions are on the broker: a mark means they are there.
            self.track(asyncio.ensure_future(self._mark_seen(request.id, sent)))
            self.metrics.on_validation(time.perf_counter() - started)
            if self.next_stage is not None and events[-1].state is State.VALIDATED:
                # Whatever the scheduler launches from it waits for these to be on the broker too.
                await self.next_stage.express_validated(events[-1], trace, [*written, *sent])

    async def _mark_seen(self, execution_id: str, transitions: list[asyncio.Future[Any]]) -> None:
        await asyncio.gather(*transitions)
        await (await self.send(self.topics.validation_seen, execution_id.encode(), b"1"))
