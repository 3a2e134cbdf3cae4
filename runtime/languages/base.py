"""A language is data: what to mount, how to compile, how to run, how to probe and self-test.

The supervisor has no language-specific branches. A compiled language sets `compile`,
and the supervisor runs that command in its own sandbox phase (own cgroup, own
`compile_limits`, own size-capped workspace) before the run phase. The supervisor then
copies the regular files the compiler left under `artifacts_dir` out of that workspace,
into the compile cache, and binds them read-only into the run phase's working directory.

Placeholders, substituted in `compile` and `run` argv elements that are exactly one of them:
- `{source}`: the main source file's name (`source_file`).
- `{sources}`: expands to several arguments, every submitted file whose name ends with one
  of `source_suffixes`, the main source first, then the rest sorted (multi-file programs);
  a name that does not start with a letter, digit or `_` is given as `./name`.
- `{memory_mib}` inside an element (e.g. `-XX:MaxRAM={memory_mib}m`): the phase's memory limit.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from core.filenames import argv_path
from runtime.types import Limits

SOURCE = "{source}"  # placeholder in `compile` and `run` argv: the source file's name
SOURCES = "{sources}"  # placeholder: every submitted file with one of `source_suffixes`
MEMORY_MIB = "{memory_mib}"  # placeholder inside an argv element: the phase's memory limit in MiB

# Compile phases get their own limits; the run phase's come with the request.
DEFAULT_COMPILE_LIMITS = Limits(
    wall_time_ms=15_000, cpu_time_ms=15_000, memory_mib=512, processes=64, output_bytes=65_536
)


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
    # Fixed variables added to the sandbox's (otherwise cleared) environment, in every phase.
    env: Mapping[str, str] = field(default_factory=dict)
    version_pattern: str = r"(\d+(?:\.\d+)+)"
    # Suffixes of the files `{sources}` expands to.
    source_suffixes: tuple[str, ...] = ()
    # The compile phase's outputs: this directory of the working directory ("." for all of it),
    # created empty before the compile. Its regular files become the run phase's read-only files.
    artifacts_dir: str = "."
    # Limits of the sandboxed version probe; None takes the backend's default.
    probe_limits: Limits | None = None
    # A program that must fail to compile, and a fragment of the compiler's message about it.
    compile_error_code: str | None = None
    compile_error_fragment: bytes = b""

    @property
    def compiled(self) -> bool:
        return self.compile is not None

    def for_source(self, code: str) -> Language:
        """The adapter as it applies to this source. Most name their entry point in `source_file`; one
        whose entry point the code names (Java: its public class) returns a copy named after it."""
        return self

    def compile_argv(self, files: Collection[str] = (), memory_mib: int | None = None) -> list[str] | None:
        if self.compile is None:
            return None
        limit = self.compile_limits.memory_mib if memory_mib is None else memory_mib
        return self._expand(self.compile, files, limit)

    def run_argv(self, args: Sequence[str] = (), files: Collection[str] = (), memory_mib: int = 256) -> list[str]:
        return self._expand(self.run, files, memory_mib) + list(args)

    def sources(self, files: Collection[str]) -> list[str]:
        """The main source first, then every other file with one of `source_suffixes`, sorted."""
        rest = sorted(f for f in files if f != self.source_file and f.endswith(self.source_suffixes))
        return [self.source_file, *rest] if self.source_suffixes else [self.source_file]

    def run_artifacts(self) -> list[tuple[str, bool]]:
        """What the run step needs from the compile: (path inside `artifacts_dir`, executed directly).

        Every run argv element that names a file inside the artifacts directory (`./out/main`,
        `out/main.exe`); the first element is exec'd, so it must be a native executable.
        """
        if not self.compiled or self.artifacts_dir in ("", "."):
            return []
        prefix = self.artifacts_dir + "/"
        out = []
        for i, arg in enumerate(self.run):
            path = arg.removeprefix("./")
            if path.startswith(prefix) and len(path) > len(prefix):
                out.append((path[len(prefix) :], i == 0))
        return out

    def parse_version(self, probe_output: bytes) -> str | None:
        match = re.search(self.version_pattern, probe_output.decode("utf-8", "replace"))
        return match.group(1) if match else None

    def _expand(self, argv: Sequence[str], files: Collection[str], memory_mib: int) -> list[str]:
        out: list[str] = []
        for arg in argv:
            if arg == SOURCE:
                out.append(self.source_file)
            elif arg == SOURCES:
                # `./-x.c`, never `-x.c` (an option) or `@x.c` (gcc's and mcs's response files).
                out += [argv_path(name) for name in self.sources(files)]
            else:
                out.append(arg.replace(MEMORY_MIB, str(memory_mib)))
        return out
