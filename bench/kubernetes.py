"""Hello world on the Kubernetes backend (a real pod on the local single-node cluster) beside the local
backend (bubblewrap, warm pool off), cold, one after the other, in the same run.

    sudo .venv/bin/python -m bench.kubernetes [--runs 20]

Starts the local cluster if none runs (scripts/k8s-cluster.sh start; stopped again afterwards) and
writes bench/results/kubernetes-latest.json. Both backends are driven directly (Backend.run), so
the figures are the backends' own cost, not the pipeline's (`aevatar-sandbox bench` measures that).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.stats import percentile
from runtime.types import Backend, RunRequest, State

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "kubernetes-latest.json"
NAMESPACE = "aevatar-bench"


def cluster_env() -> tuple[dict[str, str], bool]:
    """The local cluster's kubeconfig and images; True when this bench started the cluster."""
    script = str(REPO / "scripts" / "k8s-cluster.sh")
    running = subprocess.run(["bash", script, "status"], capture_output=True, check=False).returncode == 0
    subprocess.run(["bash", script, "start"], check=True, stdout=subprocess.DEVNULL)
    out = subprocess.run(["bash", script, "env"], capture_output=True, text=True, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line), not running


async def timed_runs(backend: Backend, runs: int, label: str) -> list[float]:
    latencies: list[float] = []
    for i in range(runs):
        request = RunRequest(
            execution_id=f"bench-{label}-{uuid.uuid4().hex[:10]}", language="python", code="print('hello')"
        )
        started = time.perf_counter()
        outcome = await backend.run(request)
        latencies.append((time.perf_counter() - started) * 1000)
        if outcome.state is not State.SUCCEEDED or outcome.stdout != b"hello\n":
            raise SystemExit(f"{label} run {i}: {outcome}")
    return latencies


def summary(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {"p50_ms": percentile(ordered, 50), "p95_ms": percentile(ordered, 95), "runs": float(len(ordered))}


async def main(runs: int) -> dict[str, Any]:
    from processors.runner import default_backend
    from runtime.kube_client import KubeApiError, connect
    from runtime.kube_manifest import KubernetesConfig, parse_images
    from runtime.kubernetes import KubernetesHostManager
    from streams.settings import Settings

    env, started_cluster = cluster_env()
    try:
        settings = replace(Settings.from_env(), warm_pool_size=0, sandbox_uid_base=66900)
        local = default_backend(settings)
        try:
            await timed_runs(local, 3, "local-warmup")
            local_ms = await timed_runs(local, runs, "local")
        finally:
            await local.close()

        admin = await connect(env["KUBECONFIG"])
        try:
            body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
            try:
                await admin.request("POST", "/api/v1/namespaces", body=body)
            except KubeApiError as exc:
                if exc.status != 409:
                    raise
        finally:
            await admin.close()
        config = KubernetesConfig(
            namespace=NAMESPACE,
            images=parse_images(env["RUNNER_IMAGE"], "python"),
            image_pull_policy="Never",
            service_account_name=None,
            executor_id="bench",
            deadline_slack_ms=10_000,
        )
        kube = await KubernetesHostManager.from_kubeconfig(env["KUBECONFIG"], config)
        try:
            await kube.start()
            await timed_runs(kube, 2, "kube-warmup")
            kube_ms = await timed_runs(kube, runs, "kube")
        finally:
            await kube.close()
    finally:
        if started_cluster:
            subprocess.run(["bash", str(REPO / "scripts" / "k8s-cluster.sh"), "stop"], check=False)
    local_s, kube_s = summary(local_ms), summary(kube_ms)
    return {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "local_cold": local_s,
        "kubernetes_cold": kube_s,
        "ratio_p50": kube_s["p50_ms"] / local_s["p50_ms"],
        "local_ms": local_ms,
        "kubernetes_ms": kube_ms,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    result = asyncio.run(main(parser.parse_args().runs))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    lo, ku = result["local_cold"], result["kubernetes_cold"]
    print(f"{'backend':<28}{'p50 ms':>10}{'p95 ms':>10}")
    print(f"{'local (bubblewrap), cold':<28}{lo['p50_ms']:>10.1f}{lo['p95_ms']:>10.1f}")
    print(f"{'kubernetes (real pod), cold':<28}{ku['p50_ms']:>10.1f}{ku['p95_ms']:>10.1f}")
    print(f"kubernetes / local p50: {result['ratio_p50']:.1f}x   ({int(lo['runs'])} runs each; {RESULTS})")
    sys.exit(0)
