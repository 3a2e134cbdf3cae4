"""The bench's outputs: the table of medians and floor ratios, the JSON, and the PNG plot."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench.load import Phase
from bench.stats import per_second, steady_rate, summarize


def phase_dict(phase: Phase, floor_p50_ms: float) -> dict[str, Any]:
    lat = summarize([s.latency_s for s in phase.samples if s.ok])
    overhead = summarize([max(0.0, s.latency_s - s.run_ms / 1000) for s in phase.samples if s.ok])
    run = summarize([s.run_ms / 1000 for s in phase.samples if s.ok])
    return {
        "name": phase.name,
        "n": len(phase.samples),
        "failed": len(phase.failures),
        "failures": sorted({s.detail for s in phase.failures})[:5],
        "latency": lat.as_dict(),
        "sandbox_run": run.as_dict(),
        "pipeline_overhead": overhead.as_dict(),
        "p50_over_floor": round(lat.p50_ms / floor_p50_ms, 2) if floor_p50_ms > 0 else None,
        "offered_rate_per_s": phase.offered_rate,
        "throughput_per_s": round(phase.throughput, 2),
        "elapsed_s": round(phase.elapsed_s, 2),
        "lost": phase.lost,
        "duplicated": phase.duplicated,
        "completions_per_s": per_second(phase.done_at(), phase.started_at),
    }


CLUTTERED_BROKER_TOPICS = 300  # more topics than this on the broker before a run: the bench warns


def broker_clutter(topic_names: list[str], max_topics: int = CLUTTERED_BROKER_TOPICS) -> str | None:
    """A warning when the broker already holds many topics (left by killed test runs or benches),
    naming the prefixes that hold most of them; None when it does not.

    Measured once (bench/README.md): with 5046 leftover topics the platform's metadata requests took
    milliseconds each, and the run was slower for it.
    """
    if len(topic_names) <= max_topics:
        return None
    prefixes: dict[str, int] = {}
    for name in topic_names:
        if name.startswith("__"):
            continue  # the broker's own
        head, dot, _ = name.partition(".")
        key = head + dot if dot else name
        prefixes[key] = prefixes.get(key, 0) + 1
    worst = sorted(prefixes.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    listed = ", ".join(f"{prefix!r} ({n})" for prefix, n in worst)
    return (
        f"the broker holds {len(topic_names)} topics before this run; timings may suffer. "
        f"Most: {listed}. Delete what is not yours with `aevatar-sandbox topics delete PREFIX`."
    )


def _fmt(x: float | None, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}f}"


def table(result: dict[str, Any]) -> str:
    """A Markdown table: medians and ratios against the bare bubblewrap floor measured in this run."""
    floor = result["floor"]
    fp50 = floor["bwrap"]["p50_ms"]
    frate = floor["bwrap_rate_per_s"]
    rows = [
        "| measurement | p50 ms | p95 ms | p99 ms | x floor p50 | notes |",
        "|---|---:|---:|---:|---:|---|",
        f"| floor: bare bwrap `python3 -I -S -c pass` | {_fmt(fp50)} | {_fmt(floor['bwrap']['p95_ms'])} | "
        f"{_fmt(floor['bwrap']['p99_ms'])} | 1.00 | loop rate {frate:.1f}/s |",
        f"| plain `python3 -I -S -c pass` | {_fmt(floor['plain']['p50_ms'])} | {_fmt(floor['plain']['p95_ms'])} | "
        f"{_fmt(floor['plain']['p99_ms'])} | {floor['plain']['p50_ms'] / fp50:.2f} | |",
    ]
    for ph in result["phases"]:
        lat, ovh = ph["latency"], ph["pipeline_overhead"]
        notes = [f"overhead p50 {_fmt(ovh['p50_ms'])} ms", f"sandbox run p50 {_fmt(ph['sandbox_run']['p50_ms'])} ms"]
        if ph["offered_rate_per_s"]:
            notes.append(f"offered {ph['offered_rate_per_s']:.1f}/s")
        if ph["name"].startswith(("burst", "sustain")):
            notes.append(f"**{ph['throughput_per_s']:.1f}/s = {ph['throughput_per_s'] / frate:.2f}x floor rate**")
            settled = steady_rate(ph["completions_per_s"])
            if ph["name"].startswith("burst") and settled == settled:
                notes.append(
                    f"settled rate (median per-second after the first 20%) {settled:.0f}/s = {settled / frate:.2f}x"
                )
            notes.append(f"lost {ph['lost']}, duplicated {ph['duplicated']}")
        if ph["failed"]:
            notes.append(f"FAILED {ph['failed']}")
        ratio = _fmt(lat["p50_ms"] / fp50, 2) if fp50 else "-"
        rows.append(
            f"| {ph['name']} (n={ph['n']}) | {_fmt(lat['p50_ms'])} | {_fmt(lat['p95_ms'])} | {_fmt(lat['p99_ms'])} | "
            f"{ratio} | {'; '.join(notes)} |"
        )
    lines = ["\n".join(rows)]
    langs = result.get("languages") or []
    if langs:
        lrows = [
            "| language | cold ms (compile-cache miss) | repeat ms (cache hit) | x floor (repeat) "
            "| compile ms cold / hit |",
            "|---|---:|---:|---:|---|",
        ]
        for lang in langs:
            lrows.append(
                f"| {lang['language']} | {_fmt(lang['cold_ms'])} | {_fmt(lang['hit_ms'])} | "
                f"{_fmt(lang['hit_ms'] / fp50, 2)} | {lang['compile_ms_cold']} / {lang['compile_ms_hit']} |"
                + ("" if lang["ok"] else " FAILED: " + lang["detail"][:80])
            )
        lines.append("\n".join(lrows))
    mem = result.get("memory")
    if mem:
        lines.append(
            "| memory (RSS, MiB, Kafka JVM excluded) | at rest | peak under load |\n|---|---:|---:|\n"
            f"| platform process | {_fmt(mem['rest_platform_mib'])} | {_fmt(mem['peak_platform_mib'])} |\n"
            f"| platform + its sandboxes (process tree) | {_fmt(mem['rest_tree_mib'])} | {_fmt(mem['peak_tree_mib'])} |"
        )
    warning = (result.get("broker") or {}).get("warning")
    if warning:
        lines.append(f"**Warning:** {warning}")
    return "\n\n".join(lines)


def write_json(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, sort_keys=False) + "\n")


def plot(result: dict[str, Any], raw: dict[str, list[float]], path: Path) -> None:
    """Latency distributions (CDF, log x) with the floor marked, and completions per second over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    for name, values in raw.items():
        if not values:
            continue
        ms = sorted(v * 1000 for v in values)
        ax1.plot(ms, [(i + 1) / len(ms) for i in range(len(ms))], label=name)
    fp50 = result["floor"]["bwrap"]["p50_ms"]
    ax1.axvline(fp50, color="k", linestyle="--", linewidth=1, label=f"bare bwrap floor p50 {fp50:.1f} ms")
    ax1.axvline(1.5 * fp50, color="grey", linestyle=":", linewidth=1, label="1.5x floor")
    ax1.set_xscale("log")
    ax1.set_xlabel("end-to-end latency, ms (log)")
    ax1.set_ylabel("fraction of requests")
    ax1.set_title("Python hello world: latency distribution")
    ax1.legend(fontsize=7)
    ax1.grid(True, which="both", alpha=0.3)
    frate = result["floor"]["bwrap_rate_per_s"]
    for ph in result["phases"]:
        if ph["name"].startswith(("burst", "sustain", "steady")):
            series = ph["completions_per_s"]
            ax2.plot(range(len(series)), series, label=f"{ph['name']} ({ph['throughput_per_s']:.1f}/s)")
    ax2.axhline(frate, color="k", linestyle="--", linewidth=1, label=f"bare bwrap loop {frate:.1f}/s")
    ax2.axhline(0.7 * frate, color="grey", linestyle=":", linewidth=1, label="70% of the floor rate")
    ax2.set_xlabel("seconds since the phase started")
    ax2.set_ylabel("results per second")
    ax2.set_title("Throughput over time")
    ax2.legend(fontsize=7)
    ax2.grid(True, alpha=0.3)
    fig.suptitle(f"aevatar-sandbox bench — {result['started_at']} — {result['host']['cpus']} CPUs")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
