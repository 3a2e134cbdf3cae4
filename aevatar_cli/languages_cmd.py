"""`aevatar-sandbox languages`: every language, its version as probed in a real sandbox, and
whether it is available on this host (the lead registers it: `app.command("languages")(languages)`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from runtime.types import LanguageInfo


def render(infos: Sequence[LanguageInfo]) -> str:
    """Pure: the table the command prints."""
    rows = [("LANGUAGE", "VERSION", "COMPILED", "AVAILABLE")]
    for i in infos:
        rows.append((i.name, i.version or "-", "yes" if i.compiled else "no", "yes" if i.available else "NO"))
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows)


async def _probe() -> list[LanguageInfo]:
    from processors.runner import default_backend
    from streams.settings import Settings

    backend = default_backend(Settings.from_env())
    try:
        return await backend.languages()
    finally:
        await backend.close()


def languages(
    as_json: bool = typer.Option(False, "--json", help="One JSON array, as GET /v1/languages returns it."),
) -> None:
    """List each language with its real version, probed inside a sandbox on this host; exit 1 if none works."""
    import asyncio
    import json

    infos = asyncio.run(_probe())
    if as_json:
        body = [{"name": i.name, "version": i.version, "compiled": i.compiled, "available": i.available} for i in infos]
        print(json.dumps(body))
    else:
        print(render(infos))
    if not any(i.available for i in infos):
        print("no language is available here: run `aevatar-sandbox doctor` (the probes need root)", file=sys.stderr)
        sys.exit(1)
