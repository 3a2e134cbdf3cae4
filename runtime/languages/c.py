"""C (gcc 12, C17 with GNU extensions) and C++ (g++ 12, C++20), from Debian.

Every `.c` (or `.cpp`/`.cc`/`.cxx`) file of the submission is compiled into `out/main`.
Headers (`.h`) submitted beside it are found by `#include "…"`. `-lm` is linked for C.
"""

from __future__ import annotations

from runtime.languages.base import SOURCES, Language
from runtime.languages.paths import GCC_TOOLCHAIN
from runtime.types import Limits

# cc1plus on a template-heavy program wants a few hundred MiB; a bounded output keeps errors readable.
GCC_COMPILE_LIMITS = Limits(
    wall_time_ms=60_000, cpu_time_ms=30_000, memory_mib=1024, processes=64, output_bytes=65_536, disk_mib=256
)
_C_ECHO = """#include <stdio.h>

int main(void) {
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) fwrite(buf, 1, n, stdout);
    return 0;
}
"""
_CPP_ECHO = """#include <iostream>
#include <iterator>
#include <string>

int main() {
    std::string all{std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()};
    std::cout << all;
    return 0;
}
"""

C = Language(
    name="c",
    source_file="main.c",
    compile=("/usr/bin/gcc", "-std=gnu17", "-O2", "-pipe", "-Wall", "-o", "out/main", SOURCES, "-lm"),
    run=("./out/main",),
    version_probe=("/usr/bin/gcc", "--version"),
    toolchain_paths=GCC_TOOLCHAIN,
    source_suffixes=(".c",),
    artifacts_dir="out",
    compile_limits=GCC_COMPILE_LIMITS,
    self_test_code=_C_ECHO,
    self_test_stdin=b"aevatar self-test c \xe2\x9c\x93\n",
    self_test_expected_stdout=b"aevatar self-test c \xe2\x9c\x93\n",
    compile_error_code="int main(void) { return undefined_name; }\n",
    compile_error_fragment=b"undefined_name",
)

CPP = Language(
    name="cpp",
    source_file="main.cpp",
    compile=("/usr/bin/g++", "-std=gnu++20", "-O2", "-pipe", "-Wall", "-o", "out/main", SOURCES),
    run=("./out/main",),
    version_probe=("/usr/bin/g++", "--version"),
    toolchain_paths=("/usr/bin/g++", *GCC_TOOLCHAIN),
    source_suffixes=(".cpp", ".cc", ".cxx"),
    artifacts_dir="out",
    compile_limits=GCC_COMPILE_LIMITS,
    self_test_code=_CPP_ECHO,
    self_test_stdin=b"aevatar self-test c++ \xe2\x9c\x93\n",
    self_test_expected_stdout=b"aevatar self-test c++ \xe2\x9c\x93\n",
    compile_error_code="int main() { std::vector<int> v; return v.size(); }\n",
    compile_error_fragment=b"vector",
)
