"""The processors' Prometheus metrics, on their own registry, fed by hooks at the edges.

The edges call `on_*` hooks; the pure cores (rules, queue, results) know nothing of metrics.
Per-tenant queue depth and running counts are read from the scheduler when scraped, so they
can never drift from it. A worker serves this registry, and the runtime's, on its own small
HTTP port (`AEVATAR_METRICS_PORT`), beside a sampler of its consumer groups' lag.

Names are `sandbox_<noun>_<unit|total>`; labels are small fixed sets (language, state, stage,
kind, tenant, topic and group of this deployment).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import Counter as Tally
from collections.abc import Iterable, Iterator, Sequence

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from processors.queue import Scheduler
from streams import kafka
from streams.records import ExecutionResult
from streams.settings import Settings
from streams.states import TERMINAL_STATES, State
from streams.topics import Topics

log = structlog.get_logger()

# Stage latencies run from milliseconds (validation) to minutes (a long run, a deep queue).
STAGE_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)
STAGES = ("validation", "queue_wait", "compile", "run", "completion", "end_to_end")
# A run started (and so ran code) when it ends in one of these.
_RAN = frozenset({State.SUCCEEDED, State.FAILED, State.LIMIT_EXCEEDED})


class ProcessorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.executions = Counter(
            "sandbox_executions_total",
            "Executions that reached a terminal state (counted once, by completion), by language and state.",
            ["language", "state"],
            registry=self.registry,
        )
        self.stage_duration = Histogram(
            "sandbox_stage_duration_seconds",
            "Time spent in each stage: validation, queue_wait, compile, run, completion, end_to_end.",
            ["stage"],
            buckets=STAGE_BUCKETS_S,
            registry=self.registry,
        )
        self.limit_hits = Counter(
            "sandbox_limit_hits_total",
            "Executions that ended LIMIT_EXCEEDED, by the limit hit.",
            ["kind"],
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "sandbox_deadletter_messages_total",
            "Messages parked on sandbox.deadletter, by the stage that parked them.",
            ["stage"],
            registry=self.registry,
        )
        self.consumer_lag = Gauge(
            "sandbox_consumer_lag_messages",
            "Records not yet committed by a consumer group, by topic and group (sampled).",
            ["topic", "group"],
            registry=self.registry,
        )
        self.executor_runs = Gauge(
            "sandbox_executor_runs", "Runs in progress on this executor's sandboxes.", registry=self.registry
        )
        self.completion_commits = Counter(
            "sandbox_completion_commits_total",
            "Commits of the completion stage: `transaction` when a batch produced results or dead "
            "letters, `plain` for offsets of batches of events that produce nothing, `express` for a "
            "result written at once from the executor in this process (processors/completion.py).",
            ["kind"],
            registry=self.registry,
        )
        self.express_handoffs = Counter(
            "sandbox_express_handoffs_total",
            "Records a stage took in process from the stage before it instead of from the broker "
            "(processors/express.py), by the stage that took them: validation (requests from the "
            "gateway), scheduling (VALIDATED transitions), launch (launches).",
            ["stage"],
            registry=self.registry,
        )

        for stage in STAGES:  # every stage's series exists from the start at 0, so rate() sees a first run
            self.stage_duration.labels(stage)

    def expect_languages(self, languages: Iterable[str]) -> None:
        """Create each language's terminal-state series at 0: a dashboard's rate() then sees the first run."""
        for language in languages:
            for state in sorted(TERMINAL_STATES, key=lambda s: s.value):
                self.executions.labels(language, state.value)

    # -- hooks ----------------------------------------------------------------------------------
    def on_validation(self, duration_s: float) -> None:
        self.stage_duration.labels("validation").observe(duration_s)

    def on_dead_letter(self, stage: str) -> None:
        self.dead_letters.labels(stage).inc()

    def on_result(self, result: ExecutionResult, completion_s: float) -> None:
        """One execution's result, committed: its state, its limit, and the latency of each stage it went through."""
        self.executions.labels(result.language or "unknown", result.state.value).inc()
        if result.state is State.LIMIT_EXCEEDED and result.limit:
            self.limit_hits.labels(result.limit).inc()
        observe = self.stage_duration.labels
        if result.state is not State.REJECTED:
            observe("queue_wait").observe(result.queued_ms / 1000)
        if result.compile_ms > 0:
            observe("compile").observe(result.compile_ms / 1000)
        if result.state in _RAN:
            observe("run").observe(result.run_ms / 1000)
        observe("completion").observe(max(0.0, completion_s))
        observe("end_to_end").observe(result.total_ms / 1000)

    def watch_scheduler(self, scheduler: Scheduler) -> None:
        self.registry.register(SchedulerCollector(scheduler))

    def render(self, *more: CollectorRegistry) -> bytes:
        return b"".join(generate_latest(r) for r in (self.registry, *more))


class SchedulerCollector(Collector):
    """Queue depth and running count per tenant, read from the scheduler at scrape time."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self._tenants: set[str] = set()

    def describe(self) -> Iterable[Metric]:
        return [
            GaugeMetricFamily("sandbox_queued_executions", "Executions QUEUED, waiting for capacity, by tenant."),
            GaugeMetricFamily("sandbox_running_executions", "Executions SCHEDULED or STARTED, by tenant."),
        ]

    def collect(self) -> Iterator[Metric]:
        queued = GaugeMetricFamily(
            "sandbox_queued_executions", "Executions QUEUED, waiting for capacity, by tenant.", labels=["tenant"]
        )
        running = GaugeMetricFamily(
            "sandbox_running_executions", "Executions SCHEDULED or STARTED, by tenant.", labels=["tenant"]
        )
        waiting = Tally(e.tenant for e in self.scheduler.queued())
        active = Tally(e.tenant for e in self.scheduler.running())
        self._tenants |= waiting.keys() | active.keys()  # a tenant seen once stays, at 0
        for tenant in sorted(self._tenants):
            queued.add_metric([tenant], waiting[tenant])
            running.add_metric([tenant], active[tenant])
        yield queued
        yield running


def consumed_topics(settings: Settings, roles: Sequence[str]) -> dict[str, list[str]]:
    """The consumer group of each role and the topics it consumes (group id: <prefix>aevatar-<role>)."""
    names = Topics(settings.topic_prefix)
    inputs = {
        "validation": [names.requests],
        "scheduling": [names.events, names.cancellations, names.leases],
        "launch": [names.launches],
        "completion": [names.events],
    }
    return {f"{settings.topic_prefix}aevatar-{role}": inputs[role] for role in roles if role in inputs}


class LagSampler:
    """Samples, every `lag_interval_ms`, each group's lag: end offset (last stable) minus committed offset."""

    def __init__(self, settings: Settings, groups: dict[str, list[str]], metrics: ProcessorMetrics) -> None:
        self.settings = settings
        self.groups = groups
        self.metrics = metrics

    async def run(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.bootstrap_servers)
        consumer = kafka.consumer(self.settings, group_id=None)
        await admin.start()
        await consumer.start()
        try:
            while True:
                try:
                    await self.sample(admin, consumer)
                except Exception as exc:  # a broker hiccup: the next round tries again
                    log.warning("lag_sample_failed", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(self.settings.lag_interval_ms / 1000)
        finally:
            await asyncio.shield(consumer.stop())
            await asyncio.shield(admin.close())

    async def sample(self, admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer) -> None:
        partitions = await kafka.partitions_by_topic(consumer, sorted({t for ts in self.groups.values() for t in ts}))
        for group, topics in self.groups.items():
            committed = await admin.list_consumer_group_offsets(group)
            tps = [TopicPartition(t, p) for t in topics for p in partitions[t]]
            ends = await consumer.end_offsets(tps)
            starts = await consumer.beginning_offsets(tps)
            lag: Tally[str] = Tally()
            for tp in tps:
                done = committed.get(tp)
                position = done.offset if done is not None and done.offset >= 0 else starts[tp]
                lag[tp.topic] += max(0, ends[tp] - position)
            for topic in topics:
                self.metrics.consumer_lag.labels(topic, group).set(lag[topic])


async def serve_metrics(
    host: str, port: int, render: ProcessorMetrics, *more: CollectorRegistry, ready: asyncio.Event | None = None
) -> None:
    """Serve GET /metrics, /healthz and /readyz on host:port until cancelled, on this event loop.

    /healthz answers 200 while the worker's event loop runs; /readyz answers 200 once `ready` is set
    (every role started), else 503. They are the worker's probes on Kubernetes.
    """
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def metrics(request: Request) -> Response:
        return Response(render.render(*more), media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        return Response("ok\n", media_type="text/plain")

    async def readyz(request: Request) -> Response:
        if ready is None or ready.is_set():
            return Response("ready\n", media_type="text/plain")
        return Response("starting\n", status_code=503, media_type="text/plain")

    app = Starlette(
        routes=[
            Route("/metrics", metrics, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ]
    )
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))  # a busy port fails the worker at start, with the OSError's message
    log.info("metrics_listening", url=f"http://{host}:{port}/metrics")
    task = asyncio.create_task(server._serve(sockets=[sock]))  # the worker owns the signal handlers
    try:
        await asyncio.shield(task)
    finally:
        server.should_exit = True
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(task), 5)
        sock.close()
