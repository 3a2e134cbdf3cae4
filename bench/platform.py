"""The platform under test, as its own process: every processor, one local executor with the warm pool, the gateway.

`python -m bench.platform` (run by the harness with the repository as working directory), configured
only by the environment (AEVATAR_*), exactly like `aevatar-sandbox up`. It differs from `up` in one
way: it builds the local backend itself, so that the warm pool settings reach it.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import structlog

from gateway.server import serve
from processors.express import Express
from processors.runner import ROLES, default_backend, run_roles
from streams.settings import Settings

log = structlog.get_logger()


async def main() -> None:
    settings = Settings.from_env()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    backend = default_backend(settings)
    await backend.check()  # starts the warm pool filling before the first request

    def ready() -> None:
        print("platform-ready", flush=True)

    express = Express()
    await run_roles(
        settings,
        list(ROLES),
        stop=stop,
        backend=backend,
        also=[lambda: serve(settings, express=express)],
        on_ready=ready,
        express=express,
    )


if __name__ == "__main__":
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(30),  # warnings and up: the hot path logs nothing
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    asyncio.run(main())
