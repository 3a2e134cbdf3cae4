"""`up`, `worker ROLE` and `submit FILE --via kafka`."""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:  # imported where a command runs: `--help` and the other commands never load them
    import asyncio

    from streams.settings import Settings

# processors.runner.ROLES, spelled here so that the CLI starts without importing the processors
# (tests/gateway/test_cli_startup.py checks that the two agree).
ROLES: tuple[str, ...] = ("validation", "scheduling", "launch", "completion")
# Present while `scripts/install.sh --toolchains` runs (make up starts it in the background).
TOOLCHAINS_WARMING = Path("/opt/aevatar-sandbox/.toolchains-warming")

LANGUAGE_BY_SUFFIX = {
    ".py": "python",
    ".cs": "csharp",
    ".rs": "rust",
    ".go": "go",
    ".js": "javascript",
    ".ts": "typescript",
    ".c": "c",
    ".cpp": "cpp",
    ".cc": "cpp",
    ".java": "java",
    ".sh": "bash",
}


def _configure_logging() -> None:
    import logging

    import structlog

    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,  # execution_id, tenant and trace_id of the message at hand
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


def _settings() -> Settings:
    from aevatar_cli.main import settings

    return settings()


def _require_root_for_local_executor(settings: Settings, roles: list[str]) -> None:
    """The local backend creates cgroups and drops each sandbox to its own uid: that takes root."""
    if "launch" in roles and settings.sandbox_backend == "local" and os.geteuid() != 0:
        typer.echo(
            "error: the local executor must run as root (it creates cgroups and drops every sandbox to an "
            "unprivileged uid); run with sudo, or run the other roles here and `worker launch` elsewhere",
            err=True,
        )
        raise typer.Exit(1)


async def _until_signal(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    import asyncio
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await main(stop)


def worker(
    roles: Annotated[list[str], typer.Argument(help=f"one or more of: {', '.join(ROLES)}, or all")],
) -> None:
    """Run processor roles in this process; many workers may join the same consumer groups."""
    _configure_logging()
    chosen = list(ROLES) if roles == ["all"] else roles
    unknown = sorted(set(chosen) - set(ROLES))
    if unknown:
        typer.echo(f"error: unknown role(s) {', '.join(unknown)}; roles are {', '.join(ROLES)} or all", err=True)
        raise typer.Exit(2)
    settings = _settings()
    _require_root_for_local_executor(settings, chosen)
    import asyncio

    from processors.runner import run_roles
    from runtime.errors import RuntimeSandboxError
    from streams.errors import StreamsError

    try:
        asyncio.run(_until_signal(lambda stop: run_roles(settings, chosen, stop=stop)))
    except (StreamsError, RuntimeSandboxError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


async def _check_early(backend: object) -> None:
    """Probe the local backend at start, not at the first run: its warm pool fills before a request comes.

    Runs beside the roles until they stop; a host that lacks a feature is reported by the first run, as before.
    """
    import asyncio

    check = getattr(backend, "check", None)
    if check is not None:
        try:
            await check()
        except Exception as exc:
            typer.echo(f"warning: the sandbox backend's check failed: {exc}", err=True)
    await asyncio.Event().wait()


def up(
    gateway: Annotated[bool, typer.Option(help="also serve the HTTP gateway")] = True,
) -> None:
    """The embedded default: the local Kafka broker, every processor, one executor and the gateway."""
    _configure_logging()
    settings = _settings()
    _require_root_for_local_executor(settings, list(ROLES))
    import asyncio

    from processors.express import Express
    from processors.metrics import LagSampler, ProcessorMetrics, consumed_topics
    from processors.runner import known_languages, make_backend, run_roles
    from runtime.errors import RuntimeSandboxError
    from runtime.metrics import REGISTRY as RUNTIME_REGISTRY
    from streams.broker import ManagedBroker
    from streams.errors import StreamsError

    try:
        if settings.managed_kafka:
            status, started = ManagedBroker(settings).start()
            typer.echo(("started " if started else "found ") + status.describe(), err=True)
    except StreamsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None

    also: list[Callable[[], Awaitable[None]]] = []
    express = Express()  # the gateway hands its requests to the processors here (processors/express.py)
    # One /metrics for the one process: the gateway's serves the processors' and the runtime's
    # registries too, and their consumer groups' lag is sampled here (a worker port, when set, also
    # serves the processors' and the runtime's, as a separate worker does).
    metrics = ProcessorMetrics()
    metrics.expect_languages(known_languages())
    if not settings.metrics_port:
        also.append(LagSampler(settings, consumed_topics(settings, ROLES), metrics).run)
    if gateway:
        from gateway.server import serve

        registries = (metrics.registry, RUNTIME_REGISTRY)
        also.append(lambda: serve(settings, express=express, metrics_registries=registries))

    def ready() -> None:
        where = [
            f"kafka      {settings.bootstrap_servers} (topic prefix {settings.topic_prefix or 'none'})",
            f"processors {', '.join(ROLES)}, {settings.executor_slots} executor slots, capacity {settings.capacity}",
        ]
        if gateway:
            url = f"http://{settings.gateway_host}:{settings.gateway_port}"
            where.append(f"gateway    {url} (status page at /)")
            where.append(f"metrics    {url}/metrics (gateway, processors, runtime)")
        if settings.metrics_port:
            where.append(f"metrics    http://{settings.metrics_host}:{settings.metrics_port}/metrics (processors)")
        if TOOLCHAINS_WARMING.exists():
            where.append(
                "languages  the toolchains beyond Python and Bash are warming (installing "
                "in the background: make install-toolchains); each becomes available as it lands"
            )
        typer.echo("aevatar-sandbox is up:\n  " + "\n  ".join(where) + "\nCtrl-C stops it.", err=True)

    async def embedded(stop: asyncio.Event) -> None:
        backend = await make_backend(settings)  # run_roles closes it
        await run_roles(
            settings,
            list(ROLES),
            stop=stop,
            backend=backend,
            also=[*also, lambda: _check_early(backend)],
            on_ready=ready,
            express=express,
            metrics=metrics,
        )

    try:
        asyncio.run(_until_signal(embedded))
    except (StreamsError, RuntimeSandboxError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo("stopped", err=True)


def submit(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    via: Annotated[str, typer.Option(help="kafka: produce to sandbox.requests and await sandbox.results")] = "kafka",
    language: Annotated[str | None, typer.Option(help="default: from the file extension")] = None,
    stdin: Annotated[Path | None, typer.Option(exists=True, dir_okay=False)] = None,
    timeout_s: Annotated[float, typer.Option(help="how long to wait for the result, seconds")] = 120.0,
) -> None:
    """Submit a program through Kafka with the client helper, print its output, exit with its code."""
    import asyncio

    from streams.client import SandboxClient, new_request

    if via != "kafka":
        typer.echo("error: --via supports only kafka here; use `run` for the HTTP gateway", err=True)
        raise typer.Exit(2)
    lang = language or LANGUAGE_BY_SUFFIX.get(file.suffix)
    if lang is None:
        typer.echo(f"error: cannot tell the language of {file.name}; pass --language", err=True)
        raise typer.Exit(2)
    settings = _settings()
    request = new_request(lang, file.read_text(), stdin=stdin.read_text() if stdin else "")

    async def go() -> int:
        async with SandboxClient(settings) as client:
            await client.submit(request)
            result = await client.result(request.id, timeout_s)
        sys.stdout.buffer.write(result.stdout)
        sys.stderr.buffer.write(result.stderr + result.compile_output)
        if result.state.value != "SUCCEEDED":
            detail = f" ({result.limit})" if result.limit else (f": {result.reason}" if result.reason else "")
            typer.echo(f"[{result.id}] {result.state.value}{detail}", err=True)
        return result.exit_code if result.exit_code is not None else (0 if result.state.value == "SUCCEEDED" else 1)

    try:
        code = asyncio.run(go())
    except TimeoutError:
        typer.echo(
            f"error: no result for {request.id} within {timeout_s:.0f} s; is the pipeline running "
            "(`aevatar-sandbox up`)?",
            err=True,
        )
        raise typer.Exit(124) from None
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)
    app.command("up")(up)
    app.command("submit")(submit)
