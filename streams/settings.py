"""The one settings object. The environment is read once, at the entry point."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from streams.errors import StreamsError

# One run may hold up to 2 MiB of stdout, 2 MiB of stderr and its compile output: the view keeps
# room for a few.
MIN_VIEW_OUTPUT_MIB = 16


class SettingsError(StreamsError):
    """A setting that cannot be used; the message names the variable."""


def parse_rate_limits(raw: str) -> dict[str, tuple[int, int]]:
    """AEVATAR_RATE_LIMITS: "tenant=per_min/burst" items separated by commas → {tenant: (per_min, burst)}."""
    limits: dict[str, tuple[int, int]] = {}
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        tenant, sep, rate = item.partition("=")
        per_min, slash, burst = rate.partition("/")
        try:
            values = (int(per_min), int(burst)) if sep and slash and tenant.strip() else None
        except ValueError:
            values = None
        if values is None or values[0] < 0 or values[1] < 1:
            raise SettingsError(
                f"AEVATAR_RATE_LIMITS item {item!r} is not tenant=per_min/burst (per_min >= 0, burst >= 1)"
            )
        limits[tenant.strip()] = values
    return limits


def _home() -> Path:
    return Path(os.path.expanduser("~"))


@dataclass(frozen=True, slots=True)
class Settings:
    # Kafka. None means: the project manages a local broker on kafka_port.
    kafka_bootstrap_servers: str | None = None
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    kafka_version: str = "4.1.1"
    kafka_heap_mib: int = 768
    data_dir: Path = field(default_factory=lambda: _home() / ".local" / "share" / "aevatar-sandbox")
    cache_dir: Path = field(default_factory=lambda: _home() / ".cache" / "aevatar-sandbox")
    topic_prefix: str = ""
    partitions: int = 4
    # Gateway.
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8080
    api_keys_file: Path | None = None
    # The webhooks' HMAC key (AEVATAR_WEBHOOK_SECRET). Unset: a production gateway (API keys, or a bind
    # beyond loopback) refuses to start; the open loopback dev mode makes a random one in data_dir
    # (gateway/secrets.py).
    webhook_secret: str = ""
    max_wait_ms: int = 30_000
    # Hashed API keys inline, "tenant:sha256hex" separated by commas (AEVATAR_API_KEYS); adds to api_keys_file.
    api_keys: str = ""
    # The key the CLI client sends (AEVATAR_API_KEY), and the gateway it talks to ("" = from host and port).
    api_key: str = ""
    gateway_url: str = ""
    gateway_max_body_bytes: int = 8 * 1024 * 1024
    # The compatibility APIs (gateway/README.md): Judge0's under judge0_prefix, Piston's under
    # piston_prefix, on the gateway's port; "" serves one at the root, beside /v1.
    judge0_enabled: bool = True
    judge0_prefix: str = "/judge0"
    piston_enabled: bool = True
    piston_prefix: str = "/piston"
    # Rate limits (gateway/ratelimit.py), one token bucket per tenant. With API keys configured every
    # tenant gets rate_limit_per_min (refill) and rate_limit_burst (bucket size). With no keys (the
    # embedded dev mode, loopback only) nothing is limited: one local user, whose backlog waits in
    # the scheduler's queue; a 429 there would only be the platform refusing work it can do.
    # rate_limits overrides them per tenant, "tenant=per_min/burst" separated by commas
    # (AEVATAR_RATE_LIMITS); in the open mode the one tenant is "default", so naming it limits that mode.
    rate_limit_per_min: int = 600
    rate_limit_burst: int = 60
    rate_limits: str = ""
    webhook_timeout_ms: int = 10_000
    webhook_max_attempts: int = 6
    webhook_backoff_base_ms: int = 1_000
    webhook_backoff_cap_ms: int = 60_000
    webhook_concurrency: int = 32
    # Webhooks connect only to public addresses (gateway/egress.py); true lets them reach loopback and
    # private networks too, for a development receiver on the same host.
    webhook_allow_private: bool = False
    # Live log streams (SSE) open at once, in all and per tenant (gateway/stream_slots.py); more get 429.
    sse_max_streams: int = 64
    sse_max_streams_per_tenant: int = 8
    # What the gateway's view keeps of finished executions (gateway/view.py, Retention): the oldest
    # finished go first once any bound is passed. A dropped one answers 404; its result stays on
    # sandbox.results. At start the view reads only the last view_retention_s of both topics.
    view_retention_s: int = 24 * 3600
    view_max_executions: int = 50_000  # ~2 KiB each without their output (measured): ~100 MiB
    view_max_output_mib: int = 64
    # Pipeline.
    # How long validation, the scheduler and completion remember an execution id (processors/window.py):
    # a repeated id within it changes nothing; an input older than it is dead-lettered as stale.
    # Match it to the broker's offsets.retention.minutes (7 days by default).
    dedupe_window_s: int = 7 * 24 * 3600
    capacity: int = 4  # runs SCHEDULED or STARTED at once, over all tenants
    executor_slots: int = 4  # concurrent runs per launch worker
    sandbox_uid_base: int = 61000  # slot i of the local backend runs as host uid sandbox_uid_base + i
    sandbox_state_dir: Path = Path("/var/lib/aevatar-sandbox")
    # The local backend's runs/ (each run's directories, the request's files) on a tmpfs of at most
    # this size while an executor is up; 0 keeps it on the state dir's disk (runtime/workspace.py).
    sandbox_runs_tmpfs_mib: int = 512
    # Opt-in, host-wide: the local backend remounts every cgroup2 hierarchy with favordynmods at start
    # and restores the original options at close (runtime/cgroups.py; `python -m bench.favordynmods`).
    sandbox_cgroup_favor_dynmods: bool = False
    sandbox_backend: str = "local"  # "local" (bubblewrap on this host) or "kubernetes" (a Job per run)
    k8s_namespace: str = "aevatar-sandbox"
    k8s_runtime_class: str = ""  # e.g. "gvisor"; empty: the cluster default
    kubeconfig: str = ""  # empty: in-cluster config
    # Runner images, "IMAGE" for every language it carries or "lang=IMAGE,lang=IMAGE"; a language
    # without an image is unavailable. `make up-kubernetes` sets the local cluster's (scripts/k8s-images.sh).
    k8s_images: str = ""
    k8s_image_languages: str = "python,c,cpp,bash"  # the languages a single IMAGE carries
    k8s_image_pull_policy: str = "IfNotPresent"  # Never for images imported into the node (no registry)
    # The Job's activeDeadlineSeconds is the wall limit plus this: a backstop for pod start-up, since
    # aevatar-runner enforces the wall limit itself from the program's start.
    k8s_deadline_slack_ms: int = 10_000
    tenant_quota: int = 4
    max_attempts: int = 2
    lease_ms: int = 15_000
    executor_id: str = field(default_factory=lambda: f"{os.uname().nodename}-{os.getpid()}")
    # A worker's stable identity across restarts: its transactional id fences its own zombie.
    # Give each completion worker on one host its own.
    worker_id: str = field(default_factory=lambda: os.uname().nodename)
    # Performance.
    # Warm pool (runtime/warm_pool.py): idle pre-started sandboxes per language at rest, for the default
    # limits; 0 turns the pool off, -1 (the default) sizes it from the executor: half its slots, at
    # least 1 (`warm_pool_idle`). Under load a pool grows with the request rate, up to
    # warm_pool_max_size (-1: the executor's slots, at least the size at rest). A run that misses the
    # pool (other limits, files, network, another language) starts cold.
    warm_pool_size: int = -1
    warm_pool_max_size: int = -1
    warm_pool_languages: str = "python,javascript"
    # How long the broker may hold an empty fetch of a consumer someone waits on (the client helper's
    # results, a live log stream). A read_committed fetch that arrives before the commit marker is
    # answered only when this runs out (aiokafka's default is 500 ms), and later requests on the same
    # connection queue behind it. Lower costs idle fetches; see streams.kafka.consumer.
    kafka_fetch_max_wait_ms: int = 20
    # How long every producer of ours (each processor, the gateway, the client helper) holds a batch
    # open for more. 0: a record goes out at once, and records sent while a request is in flight
    # still share the next one. Measured (bench/README.md): 0 vs 2 ms, sequential p50 -8 ms, a burst
    # of 600 -7% results/s; 60 s at the target rate kept up with both.
    kafka_linger_ms: int = 0
    # Processors that share a process (the embedded default, `worker all`) hand records straight to
    # the next stage there instead of waiting to fetch them back from the broker; everything is still
    # written to Kafka (processors/express.py). false: every hand-off goes through the broker.
    express: bool = True
    # Observability.
    metrics_port: int = 0  # a worker's own /metrics port (AEVATAR_METRICS_PORT); 0 = not served
    metrics_host: str = "127.0.0.1"  # where that port binds; 0.0.0.0 in a container
    otlp_endpoint: str | None = None  # OTLP/HTTP collector, e.g. http://otel:4318; None = no exporter, no cost
    lag_interval_ms: int = 5_000  # how often a worker samples its consumer groups' lag

    @property
    def warm_pool_idle(self) -> int:
        """Idle sandboxes per language at rest: warm_pool_size, or from the executor's slots when -1."""
        if self.warm_pool_size < 0:
            return max(1, self.executor_slots // 2)
        return self.warm_pool_size

    @property
    def warm_pool_ceiling(self) -> int:
        """The pool's bound per language under load: warm_pool_max_size, or the executor's slots when -1."""
        ceiling = self.warm_pool_max_size if self.warm_pool_max_size >= 0 else max(1, self.executor_slots)
        return max(ceiling, self.warm_pool_idle)

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap_servers or f"127.0.0.1:{self.kafka_port}"

    @property
    def managed_kafka(self) -> bool:
        return self.kafka_bootstrap_servers is None

    @property
    def kafka_home(self) -> Path:
        return self.cache_dir / "kafka" / self.kafka_version

    @property
    def kafka_data_dir(self) -> Path:
        return self.data_dir / "kafka"

    def with_prefix(self, prefix: str) -> Settings:
        return replace(self, topic_prefix=prefix)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        base = cls()
        values: dict[str, object] = {}
        for name in cls.__dataclass_fields__:
            var = f"AEVATAR_{name.upper()}" if name != "kafka_bootstrap_servers" else "KAFKA_BOOTSTRAP_SERVERS"
            if var not in env or env[var] == "":
                continue
            raw = env[var]
            current = getattr(base, name)
            try:
                if isinstance(current, bool):
                    values[name] = raw.lower() in {"1", "true", "yes", "on"}
                elif isinstance(current, int):
                    values[name] = int(raw)
                elif isinstance(current, Path) or name in {"api_keys_file"}:
                    values[name] = Path(raw).expanduser()
                else:
                    values[name] = raw
            except ValueError:
                raise SettingsError(f"{var}={raw!r} is not a valid {type(current).__name__}") from None
        settings = replace(base, **values)  # type: ignore[arg-type]
        if settings.partitions < 1:
            raise SettingsError("AEVATAR_PARTITIONS must be at least 1")
        if settings.dedupe_window_s < 1:
            raise SettingsError("AEVATAR_DEDUPE_WINDOW_S must be at least 1")
        if settings.view_retention_s < 1 or settings.view_max_executions < 1:
            raise SettingsError("AEVATAR_VIEW_RETENTION_S and AEVATAR_VIEW_MAX_EXECUTIONS must be at least 1")
        if settings.view_max_output_mib < MIN_VIEW_OUTPUT_MIB:
            raise SettingsError(
                f"AEVATAR_VIEW_MAX_OUTPUT_MIB must be at least {MIN_VIEW_OUTPUT_MIB} (one run may hold MiBs of output)"
            )
        parse_rate_limits(settings.rate_limits)  # fails here, naming the variable, not at the first request
        if settings.rate_limit_per_min < 0 or settings.rate_limit_burst < 1:
            raise SettingsError("AEVATAR_RATE_LIMIT_PER_MIN must be at least 0 and AEVATAR_RATE_LIMIT_BURST at least 1")
        if not 0 <= settings.metrics_port <= 65535:
            raise SettingsError("AEVATAR_METRICS_PORT must be 0 (off) or a port number")
        return settings
