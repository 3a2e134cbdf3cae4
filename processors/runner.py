"""Runs processor roles in one process, each role its own consumer-group loop (processors/batches.py)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import structlog

from processors import completion, launch, scheduling, validation
from processors.express import Express, connect
from processors.metrics import LagSampler, ProcessorMetrics, consumed_topics, serve_metrics
from processors.policy import DEFAULT_POLICY, Policy
from runtime.types import Backend

if TYPE_CHECKING:
    from runtime.local import LocalBackend
from streams import kafka
from streams.settings import Settings
from streams.topics import create_topics
from streams.tracing import Tracer

log = structlog.get_logger()

ROLES: tuple[str, ...] = ("validation", "scheduling", "launch", "completion")


def default_backend(settings: Settings) -> LocalBackend:
    """The local bubblewrap backend, warm pool included, on resources keyed by the uid base.

    Its uid range (the slots, then the pool's sandboxes) is claimed, then swept of whatever a killed
    predecessor left.
    """
    from runtime.local import LocalBackend, LocalBackendConfig
    from runtime.sweep import claim, sweep
    from runtime.warm_pool import WarmPoolConfig

    pool = WarmPoolConfig.from_sizes(settings.warm_pool_idle, settings.warm_pool_ceiling, settings.warm_pool_languages)
    slots = max(settings.executor_slots, 1)
    config = LocalBackendConfig(
        max_slots=slots,
        uid_base=settings.sandbox_uid_base,
        state_dir=str(settings.sandbox_state_dir / str(settings.sandbox_uid_base)),
        runs_tmpfs_mib=settings.sandbox_runs_tmpfs_mib,
        cgroup_favor_dynmods=settings.sandbox_cgroup_favor_dynmods,
        cgroup_prefix=f"aevatar-sandbox-{settings.sandbox_uid_base}",
        warm_pool=pool,
    )
    claim(config.state_dir)  # held until this process exits
    report = sweep(config.state_dir, config.cgroup_prefix, config.uid_base, slots + pool.max_total)
    if report.processes_killed or report.cgroups_removed or report.runs_removed:
        log.warning("swept_stale_runs", **dataclasses.asdict(report))
    return LocalBackend(config)


async def make_backend(settings: Settings) -> Backend:
    """The backend the settings name: the local bubblewrap one, or Kubernetes Jobs."""
    if settings.sandbox_backend == "local":
        return default_backend(settings)
    if settings.sandbox_backend == "kubernetes":
        from runtime.kube_manifest import KubernetesConfig, parse_images
        from runtime.kubernetes import KubernetesHostManager

        images = parse_images(settings.k8s_images, settings.k8s_image_languages)
        config = KubernetesConfig(
            namespace=settings.k8s_namespace,
            runtime_class_name=settings.k8s_runtime_class or None,
            executor_id=settings.executor_id,
            deadline_slack_ms=settings.k8s_deadline_slack_ms,
            image_pull_policy=settings.k8s_image_pull_policy,
        )
        if images:
            config = dataclasses.replace(config, images=images)
        manager = await KubernetesHostManager.from_kubeconfig(settings.kubeconfig or None, config)
        await manager.start()
        return manager
    raise ValueError(f"AEVATAR_SANDBOX_BACKEND={settings.sandbox_backend!r}: use local or kubernetes")


def known_languages() -> list[str]:
    from runtime.languages import LANGUAGES

    return sorted(LANGUAGES)


async def run_roles(
    settings: Settings,
    roles: Sequence[str],
    *,
    stop: asyncio.Event,
    policy: Policy = DEFAULT_POLICY,
    backend: Backend | None = None,
    also: Sequence[Callable[[], Awaitable[None]]] = (),
    on_ready: Callable[[], None] | None = None,
    metrics: ProcessorMetrics | None = None,
    express: Express | None = None,
) -> None:
    """Run the given roles until `stop` is set or one of them fails.

    With `settings.express`, the roles hand records to each other in process (processors/express.py);
    `express` is how a gateway in `also` hands them its requests.

    With `settings.metrics_port`, the process serves its metrics (the processors' and the runtime's
    registries) on that port and samples its consumer groups' lag.
    """
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown role(s) {sorted(unknown)}; roles are {', '.join(ROLES)}")
    await create_topics(settings)
    roles_ready = asyncio.Event()
    metrics = metrics or ProcessorMetrics()
    tracer = Tracer("aevatar-processors", settings.otlp_endpoint)
    jobs: list[Callable[[], Awaitable[None]]] = list(also)
    executor = validator = scheduler = None
    if "launch" in roles:
        backend = backend or await make_backend(settings)
        executor = launch.Executor(settings, backend, settings.executor_slots, metrics=metrics, tracer=tracer)
        jobs.append(executor.run)
    if "validation" in roles:
        validator = validation.Validation(settings, policy, known_languages(), metrics=metrics, tracer=tracer)
        jobs.append(validator.run)
    if "scheduling" in roles:
        scheduler = scheduling.Scheduling(settings, metrics=metrics, tracer=tracer)
        jobs.append(scheduler.run)
    completer = None
    if "completion" in roles:
        completer = completion.Completion(settings, metrics=metrics, tracer=tracer)
        jobs.append(completer.run)
    shared = None
    if settings.express:
        if sum(stage is not None for stage in (validator, scheduler, executor)) > 1:
            shared = kafka.producer(settings)
        express = express or Express()
        connect(express, validator, scheduler, executor, shared, completer)
    if settings.metrics_port:
        from runtime.metrics import REGISTRY as RUNTIME_REGISTRY

        jobs.append(
            lambda: serve_metrics(
                settings.metrics_host, settings.metrics_port, metrics, RUNTIME_REGISTRY, ready=roles_ready
            )
        )
        jobs.append(LagSampler(settings, consumed_topics(settings, roles), metrics).run)
    tasks: list[asyncio.Task[None]] = []
    shared_started = False
    try:
        if shared is not None:
            await shared.start()
            shared_started = True
        tasks = [asyncio.create_task(_named(job)) for job in jobs]
        roles_ready.set()
        log.info("roles_started", roles=list(roles), prefix=settings.topic_prefix)
        if on_ready is not None:
            on_ready()
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        for task in done:
            if task is not stopper and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if shared is not None and shared_started:
            await shared.stop()
        if backend is not None:
            await backend.close()
        tracer.shutdown()
        log.info("roles_stopped", roles=list(roles))


async def _named(job: Callable[[], Awaitable[None]]) -> None:
    await job()
