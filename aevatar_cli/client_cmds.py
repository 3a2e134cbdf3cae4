"""Client commands: `gateway` (serve), `run`, `status`, `logs`, `cancel`, `apikey`. Thin: parse, call, print."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

# Imported where a command runs (the CLI starts without the gateway's server, rich or httpx loaded).
if TYPE_CHECKING:
    from rich.console import Console
    from rich.status import Status

    from gateway.client import GatewayClient
    from gateway.errors import ApiError
    from streams.settings import Settings

UNAVAILABLE_EXIT = 69  # EX_UNAVAILABLE: no gateway to talk to (distinct from the program's own codes)
REFUSED_EXIT = 2  # the gateway refused the request (4xx)


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _settings() -> Settings:
    from streams.errors import StreamsError
    from streams.settings import Settings

    try:
        return Settings.from_env()
    except StreamsError as exc:
        _fail(str(exc))


def _client(settings: Settings) -> GatewayClient:
    from gateway.client import GatewayClient, gateway_url

    return GatewayClient(gateway_url(settings), settings.api_key)


@contextlib.contextmanager
def _gateway_client(settings: Settings | None = None) -> Iterator[GatewayClient]:
    """The gateway client; an unreachable gateway or a refused call becomes one line and the CLI's exit code."""
    from gateway.errors import ApiError, GatewayUnavailable

    try:
        with _client(settings or _settings()) as client:
            yield client
    except GatewayUnavailable as exc:
        _fail(str(exc), UNAVAILABLE_EXIT)
    except ApiError as exc:
        _refused(exc)


def _refused(exc: ApiError) -> NoReturn:
    where = f" (field {exc.field})" if exc.field else ""
    _fail(f"{exc.message}{where} [HTTP {exc.status} {exc.code}]", REFUSED_EXIT if exc.status < 500 else 1)


def _write(stream: str, text: str) -> None:
    out = sys.stdout if stream == "stdout" else sys.stderr
    out.write(text)
    out.flush()


def _follow(client: GatewayClient, execution_id: str, status: Status | None) -> dict[str, Any]:
    """Write the run's output as it comes; the final execution object."""
    for event in client.logs(execution_id):
        if event.event == "state" and status is not None:
            status.update(f"{execution_id}: {event.json()['state']}")
        elif event.event in {"stdout", "stderr"}:
            if status is not None:
                status.stop()
                status = None
            _write(event.event, event.json()["text"])
        elif event.event == "attempt":
            typer.echo(f"[run retried: attempt {event.json()['attempt']}]", err=True)
        elif event.event == "end":
            if status is not None:
                status.stop()
            final: dict[str, Any] = event.json()
            return final
    return client.get(execution_id)


def _report_end(execution: dict[str, Any], console: Console | None) -> None:
    state = execution["state"]
    if state == "COMPILE_ERROR" and execution.get("compile_output"):
        _write("stderr", execution["compile_output"])
    if state not in {"SUCCEEDED", "FAILED"} or console is not None:
        detail = execution.get("limit") or execution.get("reason") or ""
        line = f"{state}{': ' + detail if detail else ''} (exit {execution.get('exit_code')}, "
        line += f"{execution.get('timings', {}).get('total_ms', 0)} ms)"
        if console is not None:
            colour = "green" if state == "SUCCEEDED" else "red"
            console.print(f"[{colour}]{line}[/{colour}]", highlight=False)
        else:
            typer.echo(line, err=True)


def register(app: typer.Typer) -> None:
    @app.command("gateway")
    def gateway_cmd() -> None:
        """Serve the HTTP gateway (REST, SSE logs, webhooks) until interrupted."""
        import asyncio
        import signal

        from gateway.errors import GatewayError
        from gateway.server import serve
        from streams.errors import StreamsError
        from streams.topics import create_topics

        settings = _settings()

        async def main() -> None:
            await create_topics(settings)  # idempotent: the view and the dispatcher need them to exist
            current = asyncio.current_task()
            assert current is not None
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGTERM, current.cancel)  # stop cleanly, as on Ctrl-C
            with contextlib.suppress(asyncio.CancelledError):
                await serve(settings)

        try:
            asyncio.run(main())
        except (GatewayError, StreamsError) as exc:
            _fail(str(exc))
        except KeyboardInterrupt:
            raise typer.Exit(0) from None

    @app.command("run")
    def run_cmd(
        file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="The program's source."),
        args: list[str] | None = typer.Argument(None, help="Arguments for the program (after --)."),
        language: str | None = typer.Option(None, "--language", "-l", help="Default: from the file extension."),
        stdin: Path | None = typer.Option(None, "--stdin", exists=True, dir_okay=False, help="File fed to stdin."),
    ) -> None:
        """Run FILE in a sandbox, stream its output live, and exit with its exit code."""
        from gateway.client import exit_code_for, language_for

        settings = _settings()
        lang = language or language_for(file)
        if lang is None:
            _fail(f"cannot tell the language of {file.name} from its extension; pass --language")
        body: dict[str, Any] = {"language": lang, "code": file.read_text(errors="replace"), "args": list(args or [])}
        if stdin is not None:
            body["stdin"] = stdin.read_text(errors="replace")
        console = None
        if sys.stderr.isatty():  # a live status line for a person; plain lines otherwise
            from rich.console import Console

            console = Console(stderr=True)
        try:
            with _gateway_client(settings) as client:
                accepted = client.submit(body)
                status = console.status(f"{accepted['id']}: {accepted['state']}") if console is not None else None
                if status is not None:
                    status.start()
                try:
                    execution = _follow(client, accepted["id"], status)
                finally:
                    if status is not None:
                        status.stop()
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        _report_end(execution, console)
        raise typer.Exit(exit_code_for(execution))

    @app.command("status")
    def status_cmd(execution_id: str = typer.Argument(..., metavar="ID")) -> None:
        """Print an execution as JSON."""
        with _gateway_client() as client:
            execution = client.get(execution_id)
        import json

        typer.echo(json.dumps(execution, indent=2))

    @app.command("logs")
    def logs_cmd(
        execution_id: str = typer.Argument(..., metavar="ID"),
        follow: bool = typer.Option(False, "--follow", "-f", help="Stream until the run ends."),
    ) -> None:
        """Print an execution's stdout and stderr; with --follow, as they are produced."""
        try:
            with _gateway_client() as client:
                if follow:
                    execution = _follow(client, execution_id, None)
                    _report_end(execution, None)
                else:
                    execution = client.get(execution_id)
                    _write("stdout", execution["stdout"])
                    _write("stderr", execution["stderr"])
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    @app.command("cancel")
    def cancel_cmd(execution_id: str = typer.Argument(..., metavar="ID")) -> None:
        """Ask for an execution to be cancelled."""
        with _gateway_client() as client:
            answer = client.cancel(execution_id)
        typer.echo(f"cancel requested for {answer['id']} (state {answer['state']})")

    @app.command("apikey")
    def apikey_cmd(tenant: str = typer.Argument(..., help="The tenant the key acts for.")) -> None:
        """Make a new API key: prints the key (give it to the client) and the hashed entry (give it to the gateway)."""
        from gateway.auth import new_key
        from gateway.errors import GatewayError

        try:
            key, entry = new_key(tenant)
        except GatewayError as exc:
            _fail(str(exc))
        typer.echo(f"key:   {key}")
        typer.echo(f"entry: {entry}    (a line of AEVATAR_API_KEYS_FILE, or an item of AEVATAR_API_KEYS)")
