"""Commands beyond the broker and topics, each group in its own module, registered on the main app."""

from __future__ import annotations

import importlib
import importlib.util

import typer

# Modules that define `register(app)`; each owns its commands.
COMMAND_MODULES = (
    "aevatar_cli.doctor_cmd",
    "aevatar_cli.languages_cmd",
    "aevatar_cli.pipeline_cmds",
    "aevatar_cli.client_cmds",
    "aevatar_cli.bench_cmd",
    "aevatar_cli.judge_cmd",
)


def register(app: typer.Typer) -> None:
    for name in COMMAND_MODULES:
        if importlib.util.find_spec(name) is None:
            continue
        module = importlib.import_module(name)
        if hasattr(module, "register"):
            module.register(app)
        else:  # a module with one command function named after it: doctor_cmd.doctor
            command = name.rsplit(".", 1)[1].removesuffix("_cmd")
            app.command(command)(getattr(module, command))
