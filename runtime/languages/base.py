"""A language is data: what to mount, how to compile, how to run, how to probe and self-test.

The supervisor has no language-specific branches. A compiled language sets `compile`,
and the supervisor runs that command in its own sandbox phase (own cgroup, own
`compile_limits`) over the same working directory before the run phase.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from runtime.types import Limits

SOURCE = "{source}"
# Compile phases get their own limits; the run phase's come with the request.
DEFAULT_COMPILE_LIMITS = Limits(
    wall_time_ms=15_000, cpu_time_ms=15_000, memory_mib=512, processes=64, output_bytes=65_536
)  # placeholder in `compile` and `run` argv: the source file's name


@dataclass(frozen=True, slots=True)
class Language:
    name: str
    source_file: str
    run: tuple[str, ...]
    version_probe: tuple[str, ...]
    self_test_code: str
    self_test_stdin: bytes
    self_test_expected_stdout: bytes
    # Host paths bound read-only at the same place inside the sandbox.
    toolchain_paths: tuple[str, ...] = ()
    compile: tuple[str, ...] | None = None
    compile_limits: Limits = DEFAULT_COMPILE_LIMITS
    # Fixed variables added to the sandbox's (otherwise cleared) environment.
    env: Mapping[str, str] = field(default_factory=dict)
    version_pattern: str = r"(\d+(?:\.\d+)+)"

    @property
    def compiled(self) -> bool:
        return self.compile is not None

    def compile_argv(self) -> list[str] | None:
        if self.compile is None:
            return None
        return [self.source_file if a == SOURCE else a for a in self.compile]

    def run_argv(self, args: Sequence[str] = ()) -> list[str]:
        return [self.source_file if a == SOURCE else a for a in self.run] + list(args)

    def parse_version(self, probe_output: bytes) -> str | None:
        match = re.search(self.version_pattern, probe_output.decode("utf-8", "replace"))
        return match.group(1) if match else None
