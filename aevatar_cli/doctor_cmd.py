"""`aevatar-sandbox doctor`: which isolation features this host supports."""

from __future__ import annotations

import json
import sys
from pathlib import Path

# bench/favordynmods.py writes it in a checkout; an installed package has none (the doctor says so).
FAVORDYNMODS_RESULT = Path(__file__).resolve().parent.parent / "bench" / "results" / "favordynmods-latest.json"


def favordynmods_measured(path: Path = FAVORDYNMODS_RESULT) -> str:
    """The last measured effect of the favordynmods opt-in, medians off -> on, or "" when never measured."""
    try:
        result = json.loads(path.read_text())
        move, run = result["move_us"], result["run_ms"]
        return (
            f"last measured {result['measured_at']} ({path.name}, medians off -> on): moving a process into a"
            f" cgroup {move['off']['median']:.0f} -> {move['on']['median']:.0f} us, a cold hello world"
            f" {run['off']['median']:.1f} -> {run['on']['median']:.1f} ms ({run['ratio_on_off']:.2f}x);"
            " rerun: python -m bench.favordynmods"
        )
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def doctor() -> None:
    """Print this host's isolation features; exit 1 when a feature the policy requires is missing."""
    from runtime.doctor import probe, render

    report = probe(favordynmods_measured=favordynmods_measured())
    print(render(report))
    if not report.ok:
        sys.exit(1)
