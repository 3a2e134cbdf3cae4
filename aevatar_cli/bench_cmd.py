"""`aevatar-sandbox bench`: the performance harness (bench/), with its table printed and its plot path."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType
from typing import Annotated

import typer


def _import_harness() -> ModuleType:
    """bench/ lives at the repository root, beside the packages; make it importable from a checkout."""
    try:
        from bench import harness
    except ModuleNotFoundError:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from bench import harness
    return harness


def bench(
    burst: Annotated[int, typer.Option(help="requests in the burst through Kafka")] = 1000,
    sustain_s: Annotated[float, typer.Option(help="seconds of the sustained-rate phase (0 skips it)")] = 60.0,
    sustain_rate: Annotated[
        float, typer.Option(help="offered rate of that phase; 0 = 70% of the bare loop's rate")
    ] = 0.0,
    steady_s: Annotated[float, typer.Option(help="seconds of each steady-rate phase")] = 20.0,
    steady_rate: Annotated[float, typer.Option(help="offered rate; 0 = half the burst's throughput")] = 0.0,
    sequential: Annotated[int, typer.Option(help="requests per sequential (low-load) phase")] = 100,
    floor_n: Annotated[int, typer.Option(help="sandboxes in each floor loop")] = 200,
    languages: Annotated[bool, typer.Option(help="per-language cold and repeated hello world")] = True,
    pool_size: Annotated[
        int, typer.Option(help="warm pool size per language at rest (0: off; -1: the default, from the slots)")
    ] = -1,
    pool_max_size: Annotated[int, typer.Option(help="warm pool upper bound per language (-1: the default)")] = -1,
    executor_slots: Annotated[int, typer.Option(help="concurrent runs of the executor (and capacity)")] = 8,
    port: Annotated[int, typer.Option(help="gateway port of the platform under test (+1: its metrics)")] = 18480,
    uid_base: Annotated[int, typer.Option(help="first host uid of the bench's sandboxes")] = 66500,
    out_dir: Annotated[Path | None, typer.Option(help="where latest.json and latest.png go")] = None,
    profile: Annotated[bool, typer.Option(help="profile the platform with pyinstrument (profile.txt)")] = False,
) -> None:
    """Measure the floor, latency, throughput, overhead, languages and memory; print the table and the plot path."""
    harness = _import_harness()
    cfg = harness.BenchConfig(
        floor_n=floor_n, sequential_n=sequential, steady_rate=steady_rate, steady_s=steady_s, burst_n=burst,
        sustain_s=sustain_s, sustain_rate=sustain_rate, languages=languages, pool_size=pool_size,
        pool_max_size=pool_max_size, executor_slots=executor_slots, port=port, uid_base=uid_base,
        out_dir=out_dir or harness.RESULTS, profile=profile,
    )  # fmt: skip
    result = harness.main(cfg)
    typer.echo(result["table"])
    typer.echo(f"\nJSON: {result['paths']['json']}\nplot: {result['paths']['png']}")
    failed = sum(p["failed"] + p["lost"] + p["duplicated"] for p in result["phases"])
    if failed:
        typer.echo(f"error: {failed} requests failed, were lost or duplicated", err=True)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
