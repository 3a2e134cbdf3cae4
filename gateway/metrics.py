"""Prometheus metrics on the gateway's own registry. Fed by hooks (middleware, dispatcher), not domain code."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from gateway.webhooks import Attempt

CONTENT_TYPE = CONTENT_TYPE_LATEST


class GatewayMetrics:
    """The gateway's registry; `also`: more registries its /metrics serves after its own.

    When every role runs in this process (`aevatar-sandbox up`), the composition root passes the
    processors' and the runtime's registries, so one /metrics carries the whole pipeline.
    """

    def __init__(self, also: Sequence[CollectorRegistry] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.also = tuple(also)
        self.http_requests = Counter(
            "sandbox_http_requests_total",
            "HTTP requests answered, by route template, method and status class.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "sandbox_http_request_duration_seconds",
            "Time to answer an HTTP request (until the headers of a stream), by route template.",
            ["route"],
            registry=self.registry,
        )
        self.submissions = Counter(
            "sandbox_submissions_total",
            "POST /v1/executions outcomes: accepted, duplicate, invalid.",
            ["outcome"],
            registry=self.registry,
        )
        self.rate_limited = Counter("sandbox_rate_limited_total", "Requests refused with 429.", registry=self.registry)
        self.webhook_attempts = Counter(
            "sandbox_webhook_attempts_total",
            "Webhook delivery attempts by outcome: delivered, retrying, failed.",
            ["outcome"],
            registry=self.registry,
        )
        self.webhook_deliveries = Counter(
            "sandbox_webhook_deliveries_total",
            "Webhook deliveries that ended, by outcome: delivered, or failed after the last attempt.",
            ["outcome"],
            registry=self.registry,
        )
        self.log_streams = Gauge("sandbox_sse_streams", "SSE log streams currently open.", registry=self.registry)
        self.view_executions = Gauge(
            "sandbox_view_executions", "Executions held in the gateway's materialized view.", registry=self.registry
        )
        self.view_output_bytes = Gauge(
            "sandbox_view_output_bytes",
            "Output bytes (stdout, stderr, compile output) the view holds for finished executions.",
            registry=self.registry,
        )
        self.view_evicted = Counter(
            "sandbox_view_evicted",
            "Finished executions dropped from the view by its retention (age, count or output bytes).",
            registry=self.registry,
        )
        self._view_evicted_seen = 0
        self.waiters = Gauge(
            "sandbox_wait_requests", "Requests waiting for an execution to change.", registry=self.registry
        )

    def on_view(self, executions: int, output_bytes: int, evicted: int) -> None:
        """The view's size at a scrape; `evicted` is its running count of dropped executions."""
        self.view_executions.set(executions)
        self.view_output_bytes.set(output_bytes)
        self.view_evicted.inc(max(0, evicted - self._view_evicted_seen))
        self._view_evicted_seen = max(self._view_evicted_seen, evicted)

    def on_request(self, route: str, method: str, status: int, duration_s: float) -> None:
        self.http_requests.labels(route, method, f"{status // 100}xx").inc()
        self.http_duration.labels(route).observe(duration_s)

    def on_webhook_attempt(self, attempt: Attempt) -> None:
        self.webhook_attempts.labels(attempt.outcome).inc()
        if attempt.outcome != "retrying":
            self.webhook_deliveries.labels(attempt.outcome).inc()

    def render(self) -> bytes:
        return b"".join(generate_latest(r) for r in (self.registry, *self.also))
