"""TypeScript: tsc (pinned, from npm, installed under /opt/aevatar-sandbox/typescript) run by node.

Every `.ts` file is compiled to CommonJS in out/ (rootDir = the working directory), with
Node's type definitions (@types/node), then `node out/main.js` runs. A type error fails the
compile (`--noEmitOnError`), and tsc prints its diagnostics on stdout, which becomes compile_output.
"""

from __future__ import annotations

from runtime.languages.base import SOURCES, Language
from runtime.languages.javascript import NODE
from runtime.languages.paths import OPT, SHARED_LIBS
from runtime.types import Limits

TS_ROOT = f"{OPT}/typescript"
TSC = f"{TS_ROOT}/node_modules/typescript/lib/tsc.js"
_TSC_ARGV = (
    NODE, TSC, "--outDir", "out", "--rootDir", ".", "--module", "commonjs", "--target", "es2022",
    "--strict", "--noEmitOnError", "--skipLibCheck", "--pretty", "false",
    "--typeRoots", f"{TS_ROOT}/node_modules/@types", "--types", "node", SOURCES,
)  # fmt: skip

TYPESCRIPT = Language(
    name="typescript",
    source_file="main.ts",
    compile=_TSC_ARGV,
    run=(NODE, "out/main.js"),
    version_probe=(NODE, TSC, "--version"),
    toolchain_paths=(NODE, TS_ROOT, *SHARED_LIBS),
    source_suffixes=(".ts",),
    artifacts_dir="out",
    compile_limits=Limits(
        wall_time_ms=60_000, cpu_time_ms=60_000, memory_mib=1024, processes=64, output_bytes=65_536, disk_mib=64
    ),
    self_test_code="const input: Buffer = require('fs').readFileSync(0);\nprocess.stdout.write(input);\n",
    self_test_stdin=b"aevatar self-test ts \xe2\x9c\x93\n",
    self_test_expected_stdout=b"aevatar self-test ts \xe2\x9c\x93\n",
    compile_error_code='const x: number = "not a number";\nconsole.log(x);\n',
    compile_error_fragment=b"TS2322",
)
