"""Shared fixtures: one real Kafka broker per test run, and a topic prefix per test."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import pytest

from streams.broker import ManagedBroker
from streams.settings import Settings
from streams.topics import create_topics, delete_prefixed_topics


@pytest.fixture(scope="session")
def kafka_settings() -> Iterator[Settings]:
    """The broker the tests use: KAFKA_BOOTSTRAP_SERVERS if set, else the managed one, started once.

    A missing broker fails the run; it is never skipped.
    """
    settings = Settings.from_env()
    broker = ManagedBroker(settings)
    started = False
    if settings.managed_kafka:
        _, started = broker.start()
    yield settings
    if started and os.environ.get("AEVATAR_TEST_KEEP_KAFKA") != "1":
        broker.stop()


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
async def settings(kafka_settings: Settings, prefix: str) -> AsyncIterator[Settings]:
    """Settings with this test's own topic prefix; the catalog's topics exist."""
    s = replace(kafka_settings, topic_prefix=prefix, partitions=2)
    await asyncio.wait_for(create_topics(s), timeout=60)
    yield s
    # Workers are stopped by now (their fixture is torn down first); keep the broker's metadata small.
    await asyncio.wait_for(delete_prefixed_topics(s), timeout=60)


# 64000-67199: away from the runtime suite's 61000-62500 and the pipeline tests' explicit 63000-63199.
SESSION_UID_BASE = 64000 + 16 * (os.getpid() % 200)


class WorkerProcess:
    """`aevatar-sandbox worker ROLES` (or `aevatar-sandbox up`) as a real subprocess, for the settings' topic prefix."""

    def __init__(
        self, settings: Settings, roles: tuple[str, ...], log_path: str, env: dict[str, str], command: str = "worker"
    ) -> None:
        import subprocess
        import sys
        from pathlib import Path

        exe = Path(sys.executable).with_name("aevatar-sandbox")
        full_env = dict(os.environ)
        full_env.update(
            # Executor resources of its own per test session, so concurrent sessions never share slot uids.
            AEVATAR_SANDBOX_UID_BASE=str(SESSION_UID_BASE),
            AEVATAR_SANDBOX_STATE_DIR=f"/tmp/aevatar-test-executors-{os.getpid()}",
            AEVATAR_TOPIC_PREFIX=settings.topic_prefix,
            AEVATAR_PARTITIONS=str(settings.partitions),
            AEVATAR_DATA_DIR=str(settings.data_dir),
            AEVATAR_CACHE_DIR=str(settings.cache_dir),
            AEVATAR_KAFKA_PORT=str(settings.kafka_port),
        )
        if settings.kafka_bootstrap_servers:
            full_env["KAFKA_BOOTSTRAP_SERVERS"] = settings.kafka_bootstrap_servers
        full_env.update(env)
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(exe), command, *roles], env=full_env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def kill(self) -> None:
        """kill -9, as a crash."""
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self, timeout_s: float = 60) -> int:
        import signal
        import subprocess

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self._log.close()
        return self.proc.returncode

    def log(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")


@pytest.fixture
def start_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Start worker subprocesses: start_worker(settings, "all", env={...}); all are stopped at teardown.

    start_worker(settings, command="up", env={...}) runs the embedded default instead (gateway included).
    """
    started: list[WorkerProcess] = []

    def start(
        settings: Settings, *roles: str, env: dict[str, str] | None = None, command: str = "worker"
    ) -> WorkerProcess:
        log_dir = tmp_path_factory.mktemp("worker")
        roles = roles or (("all",) if command == "worker" else ())
        worker = WorkerProcess(settings, roles, str(log_dir / "worker.log"), env or {}, command)
        started.append(worker)
        return worker

    start.workers = started  # type: ignore[attr-defined]
    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
async def pipeline(settings: Settings, start_worker: object) -> AsyncIterator[Settings]:
    """Every processor and one local-sandbox executor, in a `worker all` subprocess, for this test's prefix."""
    start_worker(settings, "all")  # type: ignore[operator]
    yield settings
