"""Provenance at the edges: the executor stamps what it ran with, the result adds the input hashes.

The executor knows the toolchain and its version (probed once per process from its backend), the
limits it applied and the backend; the completion adds the sha256 of the code and files from the
request (core/provenance.py), so every ExecutionResult says what its verdict was made from.
"""

from __future__ import annotations

import structlog
from msgspec import structs

from core.provenance import files_sha256, sha256_hex
from runtime.types import Backend, RunRequest
from streams.records import AppliedLimits, ExecutionEvent, ExecutionRequest, Provenance, RunOutcome

log = structlog.get_logger()
_BACKEND_NAMES = {"LocalBackend": "local", "KubernetesHostManager": "kubernetes"}


def backend_name(backend: object) -> str:
    name = type(backend).__name__
    return _BACKEND_NAMES.get(name, name)


def applied_limits(run: RunRequest) -> AppliedLimits:
    lim = run.limits
    return AppliedLimits(
        wall_time_ms=lim.wall_time_ms,
        cpu_time_ms=lim.cpu_time_ms,
        memory_mib=lim.memory_mib,
        processes=lim.processes,
        output_bytes=lim.output_bytes,
        disk_mib=lim.disk_mib,
    )


class Stamper:
    """Puts the executor's part of the provenance on a terminal transition's outcome."""

    def __init__(self, backend: Backend, executor_id: str) -> None:
        self.backend = backend
        self.executor_id = executor_id
        self._versions: dict[str, str] | None = None

    async def versions(self) -> dict[str, str]:
        if self._versions is None:
            try:
                self._versions = {info.name: info.version for info in await self.backend.languages()}
            except Exception:  # a probe that fails leaves the version unknown, never the run
                log.warning("toolchain_versions_unknown", exc_info=True)
                self._versions = {}
        return self._versions

    async def stamp(self, terminal: ExecutionEvent, run: RunRequest) -> ExecutionEvent:
        if terminal.outcome is None:
            return terminal
        provenance = Provenance(
            toolchain=run.language,
            toolchain_version=(await self.versions()).get(run.language, ""),
            limits=applied_limits(run),
            backend=backend_name(self.backend),
            executor=self.executor_id,
        )
        return structs.replace(terminal, outcome=structs.replace(terminal.outcome, provenance=provenance))


def result_provenance(terminal: ExecutionEvent, request: ExecutionRequest | None) -> Provenance:
    """The executor's stamp (if the run got that far) plus the hashes of the code and files."""
    outcome = terminal.outcome or RunOutcome()
    stamped = outcome.provenance or Provenance(executor=terminal.executor or "")
    if request is None:
        return stamped
    return structs.replace(stamped, code_sha256=sha256_hex(request.code), files_sha256=files_sha256(request.files))
