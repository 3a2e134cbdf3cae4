"""docker-compose.yml, the Prometheus scrape config and the Grafana dashboard, checked without Docker.

The compose file is validated against the Compose specification's JSON schema (vendored in
tests/data/), its services' commands must exist in the CLI, and every dashboard query must name
only metrics, and labels, that the project's registries expose.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from aevatar_cli.main import app as cli
from gateway.metrics import GatewayMetrics
from processors.metrics import ProcessorMetrics
from processors.queue import Scheduler
from processors.runner import ROLES
from runtime.metrics import REGISTRY as RUNTIME_REGISTRY

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SCHEMA = ROOT / "tests" / "data" / "compose-spec.json"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "aevatar-sandbox.json"
PROMQL_FUNCTIONS = {"sum", "max", "min", "avg", "rate", "increase", "histogram_quantile", "by", "without", "le"}


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def schema_errors(document: dict[str, Any]) -> list[str]:
    schema = json.loads(SCHEMA.read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator_class(schema).iter_errors(document)
    ]


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    assert schema_errors(compose()) == []


def test_the_schema_check_would_catch_a_mistake() -> None:
    broken = copy.deepcopy(compose())
    broken["services"]["gateway"]["ports"] = "8080:8080"  # must be a list
    broken["services"]["executor"]["privilege"] = True  # no such key
    errors = schema_errors(broken)
    assert any(e.startswith("services/gateway/ports") for e in errors), errors
    assert any("privilege" in e for e in errors), errors


def test_compose_has_the_platform_kafka_and_monitoring_services() -> None:
    services = compose()["services"]
    assert set(services) == {"kafka", "gateway", "processors", "executor", "prometheus", "grafana"}
    assert services["kafka"]["image"].startswith("apache/kafka:")  # the official image
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    for name in ("gateway", "processors", "executor"):
        assert services[name]["build"]["dockerfile"] == "Dockerfile"
    executor = services["executor"]
    assert "privileged" not in executor
    assert executor["cap_add"] == ["SYS_ADMIN"]
    assert set(executor["security_opt"]) == {"apparmor=unconfined", "systempaths=unconfined"}
    assert "aevatar-cgroup-delegate" in (ROOT / "Dockerfile").read_text()


@pytest.mark.parametrize("service", ["gateway", "processors", "executor"])
def test_each_platform_service_runs_a_command_of_the_cli(service: str) -> None:
    command = compose()["services"][service]["command"]
    assert command[0] == "aevatar-sandbox"
    args = command[1:]
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, result.output
    if args[0] == "worker":
        assert set(args[1:]) <= set(ROLES), args
    # A command the CLI does not have fails the same check.
    assert CliRunner().invoke(cli, ["no-such-command", "--help"]).exit_code != 0


def test_dockerfile_is_multi_stage_and_runs_as_a_non_root_user() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM \S+ AS (\w+)$", text, re.MULTILINE)
    assert len(stages) >= 2, stages
    users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert users and users[-1] not in {"root", "0", "0:0"}


# -- metrics ------------------------------------------------------------------------------------
def exposed() -> dict[str, set[str]]:
    """Every sample name the project exposes, with the label names it carries."""
    processors = ProcessorMetrics()
    scheduler = Scheduler(1, 1, 1000)
    scheduler.on_validated(
        "x", seq=1, tenant="t", priority=0, max_attempts=1, created_at_ms=0, request=None
    )  # so the per-tenant gauges have a sample, with their labels
    processors.watch_scheduler(scheduler)
    registries: list[CollectorRegistry] = [processors.registry, GatewayMetrics().registry, RUNTIME_REGISTRY]
    names: dict[str, set[str]] = {}
    for registry in registries:
        for collector in list(registry._collector_to_names):
            for family in collector.collect():
                labels = set(getattr(collector, "_labelnames", ()) or ())
                labels |= {label for s in family.samples for label in s.labels}
                suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
                for suffix in suffixes.get(family.type, [""]):
                    names[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return names


def dashboard_queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def test_every_dashboard_query_names_metrics_and_labels_the_project_exposes() -> None:
    names = exposed()
    queries = dashboard_queries()
    assert len(queries) >= 10
    for expr in queries:
        used = set(re.findall(r"\b(sandbox_[a-z0-9_]+)", expr))
        assert used, expr
        for metric in used:
            assert metric in names, f"{metric} (in {expr}) is not exposed; exposed: {sorted(names)}"
        for metric, selector in re.findall(r"\b(sandbox_[a-z0-9_]+)\{([^}]*)\}", expr):
            for label in re.findall(r"([a-z_]+)\s*=~?", selector):
                assert label in names[metric], f"{metric} has no label {label} (in {expr})"
        for grouping in re.findall(r"by \(([^)]*)\)", expr):
            labels = {g.strip() for g in grouping.split(",")}
            assert any(labels <= names[m] for m in used), f"grouping by {labels} fits no metric of {expr}"


def test_the_query_check_would_catch_a_metric_the_project_does_not_expose() -> None:
    assert "sandbox_made_up_total" not in exposed()
    assert "sandbox_executions_total" in exposed()


def test_the_dashboard_covers_throughput_latency_queue_lag_errors_and_limits() -> None:
    text = " ".join(dashboard_queries())
    assert "rate(sandbox_executions_total" in text  # throughput
    assert "histogram_quantile(0.99, sum by (le) (rate(sandbox_stage_duration_seconds_bucket" in text
    for metric in (
        "sandbox_queued_executions",
        "sandbox_consumer_lag_messages",
        "sandbox_deadletter_messages_total",
        "sandbox_limit_hits_total",
        "sandbox_warm_pool_hits_total",
        "sandbox_compile_cache_hits_total",
        "sandbox_webhook_deliveries_total",
    ):
        assert metric in text, metric


def test_prometheus_scrapes_every_platform_service_on_its_metrics_port() -> None:
    config = yaml.safe_load((GRAFANA / "prometheus.yml").read_text())
    services = compose()["services"]
    targets = {t for job in config["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    hosts = {t.split(":")[0] for t in targets}
    assert hosts == {"gateway", "processors", "executor"}
    for target in targets:
        host, port = target.split(":")
        env = services[host]["environment"]
        expected = env["AEVATAR_GATEWAY_PORT"] if host == "gateway" else env["AEVATAR_METRICS_PORT"]
        assert port == expected, target
    datasource = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    panels = json.loads(DASHBOARD.read_text())["panels"]
    assert {p["datasource"]["uid"] for p in panels} == {uid}
