"""Compiled languages check their artifact (issue 21): a program the compiler accepted but that the
run step cannot run is COMPILE_ERROR with the compiler's words, never the platform's ERROR.

Real compilers in real sandboxes. No case is skipped: a toolchain missing on this host fails its
cases, naming it (`make test` installs every toolchain first: scripts/install.sh --toolchains).
"""

from __future__ import annotations

import pytest

from runtime.local import LocalBackend
from runtime.types import Limits, RunRequest
from streams.states import State
from tests.runtime.conftest import next_id

pytestmark = pytest.mark.sandbox

LIMITS = Limits(wall_time_ms=10_000, cpu_time_ms=10_000, memory_mib=256, processes=64, output_bytes=65_536)


async def _run(backend: LocalBackend, language: str, code: str) -> tuple[State, bytes, str | None]:
    info = {i.name: i for i in await backend.languages()}
    assert info[language].available, f"the {language} toolchain is missing on this host (make install-toolchains)"
    outcome = await backend.run(RunRequest(next_id(language), language, code, limits=LIMITS))
    return outcome.state, outcome.compile_output, outcome.error


async def test_a_rust_library_crate_is_a_compile_error(backend: LocalBackend) -> None:
    state, output, error = await _run(backend, "rust", '#![crate_type = "lib"]\npub fn f() -> u32 { 1 }\n')
    assert (state, error) == (State.COMPILE_ERROR, None)
    assert b"'main' is not an executable program" in output


async def test_a_rust_crate_without_main_is_a_compile_error_in_rustcs_words(backend: LocalBackend) -> None:
    state, output, error = await _run(backend, "rust", "pub fn f() -> u32 { 1 }\n")
    assert (state, error) == (State.COMPILE_ERROR, None)
    assert b"main" in output and b"E0601" in output


async def test_a_go_package_that_is_not_main_is_a_compile_error(backend: LocalBackend) -> None:
    state, output, error = await _run(backend, "go", "package lib\n\nfunc F() int { return 1 }\n")
    assert (state, error) == (State.COMPILE_ERROR, None)
    assert output


async def test_a_csharp_library_without_main_is_a_compile_error(backend: LocalBackend) -> None:
    state, output, error = await _run(backend, "csharp", "public static class Lib { public static int F() => 1; }\n")
    assert (state, error) == (State.COMPILE_ERROR, None)
    assert b"CS5001" in output


@pytest.mark.parametrize(
    "package",
    [
        "p" * 250 + "." + "q" * 250,  # two segments at the 255-byte name limit, with ".class" beyond it
        ".".join(["deep"] * 12),  # deeper than the compile cache keeps
        ".".join(["é" * 120] * 3),  # 240 bytes of UTF-8 per directory
    ],
)
async def test_a_java_class_in_a_long_package_path_is_never_an_error(backend: LocalBackend, package: str) -> None:
    code = f"package {package};\npublic class Main {{ public static void main(String[] a) {{ }} }}\n"
    state, output, error = await _run(backend, "java", code)
    assert state is not State.ERROR, error
    assert state in (State.COMPILE_ERROR, State.SUCCEEDED, State.FAILED)
    if state is State.COMPILE_ERROR:
        assert output
