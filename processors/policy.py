"""The execution policy: limit defaults and maxima, input sizes, and the optional static checks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from runtime.types import Limits

LIMIT_FIELDS: tuple[str, ...] = ("wall_time_ms", "cpu_time_ms", "memory_mib", "processes", "output_bytes", "disk_mib")

# The smallest sane value of each limit; below it a run could not even start.
LIMIT_MINIMA = Limits(wall_time_ms=100, cpu_time_ms=100, memory_mib=16, processes=1, output_bytes=1, disk_mib=1)


@dataclass(frozen=True, slots=True)
class Policy:
    defaults: Limits = Limits()
    maxima: Limits = Limits(
        wall_time_ms=60_000,
        cpu_time_ms=60_000,
        memory_mib=2048,
        processes=256,
        output_bytes=8 * 1024 * 1024 // 4,
        disk_mib=512,
    )
    max_code_bytes: int = 512 * 1024
    max_file_bytes: int = 1024 * 1024
    max_files: int = 64
    max_total_input_bytes: int = 4 * 1024 * 1024
    max_stdin_bytes: int = 1024 * 1024
    max_args: int = 128
    max_arg_bytes: int = 4096
    max_attempts: int = 2
    max_attempts_ceiling: int = 5
    allow_network: bool = False
    # Static policy, off by default: language name → module names whose import is refused.
    banned_imports: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def with_banned_imports(self, language: str, modules: set[str]) -> Policy:
        from dataclasses import replace

        return replace(self, banned_imports={**self.banned_imports, language: frozenset(modules)})


DEFAULT_POLICY = Policy()
