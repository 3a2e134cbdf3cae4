"""The `aevatar-sandbox` command line. Thin: parse, call the package, print.

It starts fast: at import it loads typer and its own command modules, nothing else. Each command
imports what it uses when it runs (tests/gateway/test_cli_startup.py checks that `--help` loads
none of gateway, processors, runtime or the Kafka client; bench/README.md has the start-up time).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer

if TYPE_CHECKING:
    from streams.settings import Settings

# httpx imports its own command line (httpx._main: click, rich, pygments; ~65 ms here) whenever those
# are installed, and falls back to a stub when that import fails. This CLI never runs httpx's, so the
# client commands skip it: a None in sys.modules makes that import fail at once.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

app = typer.Typer(
    name="aevatar-sandbox",
    help="Aevatar Sandbox: run untrusted code, isolated, from one laptop to a Kubernetes cluster.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain help, as click prints it: rich's renderer costs ~90 ms of imports on every `--help`.
    rich_markup_mode=None,
)
kafka_app = typer.Typer(help="The managed local Kafka broker.", no_args_is_help=True, rich_markup_mode=None)
topics_app = typer.Typer(help="The topic catalog.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(kafka_app, name="kafka")
app.add_typer(topics_app, name="topics")

F = TypeVar("F", bound=Callable[..., Any])


def settings() -> Settings:
    from streams.errors import StreamsError
    from streams.settings import Settings

    try:
        return Settings.from_env()
    except StreamsError as exc:
        fail(str(exc))


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def clear_errors(fn: F) -> F:
    """Turn the project's own errors into one clear line and exit code 1, never a stack trace."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from streams.errors import StreamsError

        try:
            return fn(*args, **kwargs)
        except StreamsError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


@kafka_app.command("start")
@clear_errors
def kafka_start() -> None:
    """Start the local broker (downloading its jars once); harmless when it already runs."""
    from streams.broker import ManagedBroker

    broker = ManagedBroker(settings())
    if not broker.settings.managed_kafka:
        typer.echo(broker.status().describe())
        return
    if not broker.installed():
        typer.echo(f"resolving Kafka {broker.settings.kafka_version} jars from Maven Central into {broker.lib} ...")
    status, started = broker.start()
    typer.echo(("started: " if started else "already running: ") + status.describe())


@kafka_app.command("stop")
@clear_errors
def kafka_stop() -> None:
    """Stop the local broker with SIGTERM."""
    from streams.broker import ManagedBroker

    broker = ManagedBroker(settings())
    if not broker.settings.managed_kafka:
        typer.echo(broker.status().describe())
        return
    typer.echo("kafka stopped" if broker.stop() else "kafka was not running")


@kafka_app.command("status")
@clear_errors
def kafka_status() -> None:
    """Say whether the broker runs and accepts connections (exit 1 when it does not)."""
    from streams.broker import ManagedBroker

    status = ManagedBroker(settings()).status()
    typer.echo(status.describe())
    if not status.accepting:
        raise typer.Exit(1)


@topics_app.command("create")
@clear_errors
def topics_create() -> None:
    """Create the catalog's topics, idempotently, with their partitions and cleanup policy."""
    import asyncio

    from streams.topics import create_topics

    reports = asyncio.run(create_topics(settings()))
    for r in reports:
        verb = "created" if r.created else "exists "
        typer.echo(f"{verb} {r.name:<36} partitions={r.partitions} cleanup.policy={r.configs['cleanup.policy']}")


@topics_app.command("delete")
@clear_errors
def topics_delete(
    prefix: str = typer.Argument(help="delete every topic whose name starts with this prefix (never empty)"),
) -> None:
    """Delete the topics of one prefix: what a killed test run or benchmark left on the broker."""
    import asyncio

    from streams.topics import delete_prefixed_topics

    if not prefix:
        fail("refusing an empty prefix: that would name the platform's own topics")
    gone = asyncio.run(delete_prefixed_topics(settings().with_prefix(prefix)))
    for name in gone:
        typer.echo(f"deleted {name}")
    typer.echo(f"{len(gone)} topic(s) with prefix {prefix!r} deleted")


def _register_optional() -> None:
    """Commands whose modules are owned by other packages."""
    from aevatar_cli import commands

    commands.register(app)


_register_optional()


def run() -> None:  # pragma: no cover - console entry
    sys.exit(app())
