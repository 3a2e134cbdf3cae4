"""Running the gateway: the real ports (Kafka producer, live view, webhook dispatcher) and uvicorn.

`serve(settings)` runs until cancelled, so `aevatar-sandbox up` can run it next to other tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence

import uvicorn
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from gateway import logstream
from gateway.app import Services, build_app
from gateway.audit import logger
from gateway.auth import KeyRing
from gateway.client import gateway_url
from gateway.errors import ConfigError
from gateway.languages import HostProbe, LanguageSource
from gateway.live import LiveView
from gateway.metrics import GatewayMetrics
from gateway.ratelimit import Rate, RateLimiter
from gateway.secrets import with_webhook_secret
from gateway.stream_slots import StreamSlots
from gateway.webhooks import WebhookDispatcher
from processors.express import Express
from runtime.languages import LANGUAGES
from streams import kafka
from streams.records import LogChunk
from streams.settings import Settings, parse_rate_limits
from streams.tracing import Tracer

LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
REACHABLE_CACHE_S = 1.0


class KafkaSink:
    """The RecordSink over an aiokafka producer; `reachable` asks the cluster for metadata, cached briefly.

    With `express` (processors running in this process), records go through the producer the
    processors share, and each is offered to them at once (processors/express.py): a request's
    transitions up to its STARTED then reach the broker in the same request as the request itself.
    `send` returns once the broker has the record, as without.
    """

    def __init__(self, producer: AIOKafkaProducer, express: Express | None = None) -> None:
        self.producer = producer
        self.express = express
        self._checked_at = -REACHABLE_CACHE_S
        self._reachable = False
        self._log = logger("aevatar.gateway.sink")

    async def send(self, topic: str, value: bytes, key: str, headers: list[tuple[str, bytes]] | None = None) -> None:
        express = self.express
        producer = express.producer if express is not None and express.producer is not None else self.producer
        delivered = await producer.send(topic, value, key=key.encode(), headers=headers)
        if express is not None:
            try:
                await express.written(kafka.as_read(topic, key.encode(), value, headers), delivered)
            except Exception:  # its consumer takes it the usual way
                self._log.exception("express hand-off failed", topic=topic)
        await delivered

    async def reachable(self) -> bool:
        now = time.monotonic()
        if now - self._checked_at >= REACHABLE_CACHE_S:
            try:
                async with asyncio.timeout(2):
                    await self.producer.client.fetch_all_metadata()
                self._reachable = True
            except Exception:
                self._reachable = False
            self._checked_at = time.monotonic()
        return self._reachable


def check_binding(host: str, keys: KeyRing) -> None:
    """With no keys, the gateway is open: refuse anything but loopback."""
    if keys.open and host not in LOOPBACK:
        raise ConfigError(
            f"refusing to bind {host}: no API keys are configured, so the gateway would be open to anyone. "
            "Configure keys (AEVATAR_API_KEYS or AEVATAR_API_KEYS_FILE) or bind 127.0.0.1."
        )


def rate_limiter(settings: Settings, keys: KeyRing) -> RateLimiter:
    """With keys, every tenant's bucket at the settings' rate; open (loopback, no keys), no limit.

    AEVATAR_RATE_LIMITS overrides either per tenant (the open mode's one tenant is "default").
    """
    per_tenant = {t: Rate(m, b) for t, (m, b) in parse_rate_limits(settings.rate_limits).items()}
    if keys.open:
        return RateLimiter(per_min=None, per_tenant=per_tenant)
    return RateLimiter(per_min=settings.rate_limit_per_min, burst=settings.rate_limit_burst, per_tenant=per_tenant)


def stream_slots(settings: Settings, keys: KeyRing) -> StreamSlots:
    """Live log streams: the per-tenant bound applies between tenants; open, the one user may hold them all."""
    per_tenant = settings.sse_max_streams if keys.open else settings.sse_max_streams_per_tenant
    return StreamSlots(settings.sse_max_streams, per_tenant)


async def serve(
    settings: Settings,
    *,
    ready: asyncio.Event | None = None,
    languages: LanguageSource | None = None,
    on_started: Callable[[uvicorn.Server], None] | None = None,
    express: Express | None = None,
    metrics_registries: Sequence[CollectorRegistry] = (),
) -> None:
    """Serve the gateway until cancelled. `ready` is set once the view is rebuilt and the port is bound.

    `express`: the processors running in this process, which take its requests in process.
    `metrics_registries`: theirs (and the runtime's), served on this /metrics after the gateway's own.
    """
    log = logger("aevatar.gateway")
    keys = KeyRing.load(file=settings.api_keys_file, inline=settings.api_keys)
    check_binding(settings.gateway_host, keys)
    settings = with_webhook_secret(settings, keys)  # refuses a production gateway's missing or known one
    if keys.open:
        log.warning("gateway is open: no API keys configured; bound to loopback only", host=settings.gateway_host)
    else:
        log.info("API keys loaded", keys=len(keys))
    metrics = GatewayMetrics(also=metrics_registries)
    tracer = Tracer("aevatar-gateway", settings.otlp_endpoint)
    producer = kafka.producer(settings)
    await producer.start()
    tasks: list[asyncio.Task[None]] = []
    server: uvicorn.Server | None = None
    server_task: asyncio.Task[None] | None = None
    try:
        live = LiveView(settings)
        if express is not None:
            express.view = live.fold_written
        dispatcher = WebhookDispatcher(settings, producer, on_attempt=metrics.on_webhook_attempt)
        tasks = [asyncio.create_task(live.run(), name="gateway-view")]
        tasks.append(asyncio.create_task(dispatcher.run(), name="gateway-webhooks"))

        def follow(execution_id: str, since_ms: int, finished: Callable[[], bool]) -> AsyncIterator[LogChunk | None]:
            return logstream.follow(settings, producer, execution_id, since_ms, finished)

        services = Services(
            settings=settings,
            sink=KafkaSink(producer, express),
            live=live,
            languages=languages or HostProbe(),
            keys=keys,
            limiter=rate_limiter(settings, keys),
            stream_slots=stream_slots(settings, keys),
            metrics=metrics,
            language_names=frozenset(LANGUAGES),
            follow_logs=follow,
            tracer=tracer,
        )
        await _first_of(live.ready.wait(), tasks)
        config = uvicorn.Config(
            build_app(services),
            host=settings.gateway_host,
            port=settings.gateway_port,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=3,
        )
        server = uvicorn.Server(config)
        sock = bind_socket(settings.gateway_host, settings.gateway_port)
        # `_serve` rather than `serve`: the process that runs us (the CLI or `up`) owns the signal handlers.
        server_task = asyncio.create_task(server._serve(sockets=[sock]), name="gateway-http")
        await _first_of(_started(server), [*tasks, server_task])
        if not server.started:
            raise ConfigError(f"could not bind {settings.gateway_host}:{settings.gateway_port}")
        log.info("gateway listening", url=gateway_url(settings), executions=len(live.view))
        if on_started is not None:
            on_started(server)
        if ready is not None:
            ready.set()
        await _first_of(asyncio.Event().wait(), [*tasks, server_task])
    finally:
        if server is not None and server_task is not None:
            server.should_exit = True
            with contextlib.suppress(BaseException):
                await asyncio.shield(server_task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.shield(producer.stop())
        tracer.shutdown()


def bind_socket(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that a busy port is a clear error (uvicorn would exit the process)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on accepted sockets whose proto says TCP.
    # Without it a response written in two parts waits for the client's delayed ACK (~40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot bind {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


async def _started(server: uvicorn.Server) -> None:
    while not server.started and not server.should_exit:
        await asyncio.sleep(0.02)  # uvicorn offers no event for "bound"; this runs only during start-up


async def _first_of(awaitable: object, background: list[asyncio.Task[None]]) -> None:
    """Await `awaitable`, but fail at once if a background task ends first (with its error)."""
    main = asyncio.ensure_future(awaitable)  # type: ignore[call-overload]
    try:
        done, _ = await asyncio.wait([main, *background], return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        main.cancel()
        raise
    if main in done:
        main.result()
        return
    main.cancel()
    for task in done:
        exc = task.exception()
        if exc is not None:
            raise exc
        if isinstance(task, asyncio.Task) and task.get_name() == "gateway-http":
            raise ConfigError("the HTTP server stopped (is the port in use?)")
        raise ConfigError(f"{task.get_name()} stopped unexpectedly")


__all__ = ["KafkaSink", "check_binding", "gateway_url", "rate_limiter", "serve", "stream_slots"]
