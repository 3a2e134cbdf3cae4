"""Rust: the host's rustc (rustup stable), run directly and offline: no cargo, no registry.

rustup keeps toolchains under /root (0700, unreadable by the sandbox uid), so the install
step copies the compiler and the host target's standard library to /opt/aevatar-sandbox/rust.
rustc links with the system `cc` (gcc + binutils). Modules in other submitted files are found
by `mod name;` from main.rs, so the compile command names only the crate root.
Memory: rustc's LLVM back end peaks at a few hundred MiB at -O; 1 GiB leaves room.
"""

from __future__ import annotations

from runtime.languages.base import SOURCE, Language
from runtime.languages.paths import GCC_TOOLCHAIN, OPT
from runtime.types import Limits

RUST_ROOT = f"{OPT}/rust"
RUSTC = f"{RUST_ROOT}/bin/rustc"

RUST = Language(
    name="rust",
    source_file="main.rs",
    compile=(RUSTC, "--edition", "2021", "-C", "opt-level=2", "-C", "strip=debuginfo", "-o", "out/main", SOURCE),
    run=("./out/main",),
    version_probe=(RUSTC, "--version"),
    toolchain_paths=(RUST_ROOT, *GCC_TOOLCHAIN),
    artifacts_dir="out",
    compile_limits=Limits(
        wall_time_ms=60_000, cpu_time_ms=60_000, memory_mib=1024, processes=128, output_bytes=65_536, disk_mib=256
    ),
    self_test_code="""use std::io::{self, Read, Write};

fn main() {
    let mut input = Vec::new();
    io::stdin().read_to_end(&mut input).unwrap();
    io::stdout().write_all(&input).unwrap();
}
""",
    self_test_stdin=b"aevatar self-test rust \xe2\x9c\x93\n",
    self_test_expected_stdout=b"aevatar self-test rust \xe2\x9c\x93\n",
    compile_error_code='fn main() {\n    let x: i32 = "not a number";\n}\n',
    compile_error_fragment=b"mismatched types",
)
