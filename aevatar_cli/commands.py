"""Commands beyond the broker and topics, registered on the main app."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    try:
        from aevatar_cli.doctor_cmd import doctor
    except ImportError:  # the runtime's doctor is not built yet
        return
    app.command("doctor")(doctor)
