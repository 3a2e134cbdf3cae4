"""`aevatar-sandbox doctor`: which isolation features this host supports."""

from __future__ import annotations

import sys


def doctor() -> None:
    """Print this host's isolation features; exit 1 when a feature the policy requires is missing."""
    from runtime.doctor import probe, render

    report = probe()
    print(render(report))
    if not report.ok:
        sys.exit(1)
