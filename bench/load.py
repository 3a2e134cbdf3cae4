"""Load generators: HTTP with wait, and Kafka with the client helper. Every result is checked.

Each generator returns `Sample`s: when the request was sent, how long until its final result,
and the sandbox's own run time from the result's timings (so the pipeline's overhead is
`latency - run_ms`). A result that is missing, late or not the expected output is a failure,
never silently dropped.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.http1 import Http1Client, HttpError
from streams import kafka
from streams.client import SandboxClient, new_request
from streams.records import ExecutionRequest, ExecutionResult, RequestLimits
from streams.settings import Settings
from streams.topics import Topics

HELLO = "print('hello')\n"
HELLO_OUT = "hello\n"


@dataclass(frozen=True, slots=True)
class Sample:
    sent_at: float  # monotonic
    latency_s: float
    run_ms: int
    ok: bool
    detail: str = ""
    execution_id: str = ""
    sent_ms: int = 0  # wall clock (epoch ms), comparable with the events' at_ms
    received_ms: int = 0


@dataclass(slots=True)
class Phase:
    name: str
    samples: list[Sample] = field(default_factory=list)
    started_at: float = 0.0
    elapsed_s: float = 0.0
    offered_rate: float | None = None
    ids: list[str] = field(default_factory=list)
    lost: int = 0
    duplicated: int = 0

    @property
    def failures(self) -> list[Sample]:
        return [s for s in self.samples if not s.ok]

    @property
    def throughput(self) -> float:
        return len([s for s in self.samples if s.ok]) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def done_at(self) -> list[float]:
        return [s.sent_at + s.latency_s for s in self.samples if s.ok]


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _check_http(body: dict[str, Any], expected_stdout: str) -> tuple[bool, str]:
    if body.get("state") != "SUCCEEDED":
        return False, f"state {body.get('state')}: {body.get('reason') or body.get('stderr', '')[:200]}"
    if body.get("stdout") != expected_stdout:
        return False, f"stdout {body.get('stdout')!r}"
    return True, ""


def _check_result(result: ExecutionResult, expected_stdout: str) -> tuple[bool, str]:
    if result.state.value != "SUCCEEDED":
        return False, f"state {result.state.value}: {result.reason or result.stderr[:200]!r}"
    if result.stdout != expected_stdout.encode():
        return False, f"stdout {result.stdout!r}"
    return True, ""


class Http:
    """POST /v1/executions?wait=true on keep-alive connections (bench/http1.py: a lean client)."""

    def __init__(self, base_url: str, timeout_s: float = 120.0) -> None:
        self.client = Http1Client(base_url, timeout_s)

    async def close(self) -> None:
        await self.client.close()

    async def run(self, body: dict[str, Any], expected_stdout: str = HELLO_OUT) -> tuple[Sample, dict[str, Any]]:
        encoded = json.dumps(body).encode()
        sent, sent_ms = time.monotonic(), wall_ms()
        try:
            response = await self.client.post_json("/v1/executions?wait=true", encoded)
            latency = time.monotonic() - sent
            data: dict[str, Any] = json.loads(response.body)
        except (HttpError, ValueError) as exc:
            return Sample(sent, time.monotonic() - sent, 0, False, f"{type(exc).__name__}: {exc}"), {}
        if response.status != 200:
            text = response.body[:200].decode(errors="replace")
            return Sample(sent, latency, 0, False, f"HTTP {response.status}: {text}"), data
        ok, detail = _check_http(data, expected_stdout)
        run_ms = int(data.get("timings", {}).get("run_ms", 0))
        return Sample(sent, latency, run_ms, ok, detail, str(data.get("id", "")), sent_ms, wall_ms()), data

    async def hello(self, limits: dict[str, int] | None = None) -> Sample:
        body: dict[str, Any] = {"language": "python", "code": HELLO}
        if limits:
            body["limits"] = limits
        sample, _ = await self.run(body)
        return sample


class Kafka:
    """The client helper (streams.client.SandboxClient): produce a request, await its result."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client = SandboxClient(settings)

    async def start(self) -> None:
        await self.client.start()

    async def close(self) -> None:
        await self.client.stop()

    async def run(self, request: ExecutionRequest, expected_stdout: str = HELLO_OUT) -> Sample:
        sent, sent_ms = time.monotonic(), wall_ms()
        try:
            await self.client.submit(request)
            result = await self.client.result(request.id, timeout_s=180.0)
        except TimeoutError:
            return Sample(sent, time.monotonic() - sent, 0, False, "no result within 180 s")
        received_ms = wall_ms()
        ok, detail = _check_result(result, expected_stdout)
        return Sample(sent, time.monotonic() - sent, result.run_ms, ok, detail, request.id, sent_ms, received_ms)

    async def hello(self, limits: RequestLimits | None = None) -> tuple[str, Sample]:
        request = new_request("python", HELLO, limits=limits) if limits else new_request("python", HELLO)
        return request.id, await self.run(request)


async def sequential(name: str, n: int, one: Callable[[], Awaitable[Sample]]) -> Phase:
    phase = Phase(name, started_at=time.monotonic())
    for _ in range(n):
        phase.samples.append(await one())
    phase.elapsed_s = time.monotonic() - phase.started_at
    return phase


async def open_loop(
    name: str, rate_per_s: float, duration_s: float, one: Callable[[], Coroutine[Any, Any, Sample]]
) -> Phase:
    """Offer `rate_per_s` requests per second for `duration_s`, whatever the latency (no coordinated omission)."""
    phase = Phase(name, started_at=time.monotonic(), offered_rate=rate_per_s)
    total = max(1, int(rate_per_s * duration_s))
    tasks: list[asyncio.Task[Sample]] = []
    for i in range(total):
        delay = phase.started_at + i / rate_per_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    phase.samples = list(await asyncio.gather(*tasks))
    phase.elapsed_s = max(s.sent_at + s.latency_s for s in phase.samples) - phase.started_at
    return phase


async def kafka_batch(
    name: str, kafka_load: Kafka, n: int, rate_per_s: float | None = None, duration_s: float | None = None
) -> Phase:
    """A burst of `n` requests (all at once), or `rate_per_s` for `duration_s`; ids kept for the audit."""
    phase = Phase(name, started_at=time.monotonic(), offered_rate=rate_per_s)
    if rate_per_s is not None and duration_s is not None:
        n = max(1, int(rate_per_s * duration_s))
    requests = [new_request("python", HELLO) for _ in range(n)]
    phase.ids = [r.id for r in requests]
    tasks: list[asyncio.Task[Sample]] = []
    for i, request in enumerate(requests):
        if rate_per_s is not None:
            delay = phase.started_at + i / rate_per_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(kafka_load.run(request)))
    phase.samples = list(await asyncio.gather(*tasks))
    ends = [s.sent_at + s.latency_s for s in phase.samples]
    phase.elapsed_s = max(ends) - phase.started_at
    return phase


async def audit_results(settings: Settings, ids: Sequence[str]) -> tuple[int, int]:
    """(lost, duplicated): read sandbox.results (read_committed) from the start and count each id's results."""
    records = await kafka.read_to_end(settings, Topics(settings.topic_prefix).results)
    counts: Counter[str] = Counter(r.key.decode() for r in records if r.key is not None)
    lost = sum(1 for i in ids if counts[i] == 0)
    duplicated = sum(1 for i in ids if counts[i] > 1)
    return lost, duplicated
