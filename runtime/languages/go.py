"""Go: the host's Go under /usr/local/go, offline (GOPROXY=off, GOTOOLCHAIN=local, no cgo).

Every `.go` file of the submission (package main, one directory) is built into `out/main`.
Build cache: GOCACHE is /opt/aevatar-sandbox/go-cache, the standard library pre-built by the
install step and bound READ-ONLY (go treats cache writes as best-effort, so nothing is ever
written there); everything else the build writes (GOTMPDIR, HOME, GOPATH) is in the compile
sandbox's own tmpfs, discarded with it. Nothing writable is shared between runs.
Memory: the Go runtime reserves virtual memory but the cgroup counts only what it touches, so
no virtual-memory limit applies; `go build` runs several compile processes, hence processes=128.
"""

from __future__ import annotations

from runtime.languages.base import SOURCES, Language
from runtime.languages.paths import OPT
from runtime.types import Limits

GOROOT = "/usr/local/go"
GO_CACHE = f"{OPT}/go-cache"

GO = Language(
    name="go",
    source_file="main.go",
    compile=(f"{GOROOT}/bin/go", "build", "-o", "out/main", SOURCES),
    run=("./out/main",),
    version_probe=(f"{GOROOT}/bin/go", "version"),
    toolchain_paths=(GOROOT, GO_CACHE),
    env={
        "GOROOT": GOROOT,
        "GOCACHE": GO_CACHE,
        "GOTMPDIR": "/tmp",
        "HOME": "/tmp",
        "GOPATH": "/tmp/go",
        "GOPROXY": "off",
        "GOTOOLCHAIN": "local",
        "GOFLAGS": "-buildvcs=false",
        "GOTELEMETRY": "off",
        "CGO_ENABLED": "0",
        "PATH": f"{GOROOT}/bin:/usr/bin:/bin",
    },
    source_suffixes=(".go",),
    artifacts_dir="out",
    compile_limits=Limits(
        wall_time_ms=60_000, cpu_time_ms=60_000, memory_mib=1024, processes=128, output_bytes=65_536, disk_mib=256
    ),
    self_test_code="""package main

import (
\t"io"
\t"os"
)

func main() {
\tif _, err := io.Copy(os.Stdout, os.Stdin); err != nil {
\t\tos.Exit(1)
\t}
}
""",
    self_test_stdin=b"aevatar self-test go \xe2\x9c\x93\n",
    self_test_expected_stdout=b"aevatar self-test go \xe2\x9c\x93\n",
    compile_error_code='package main\n\nfunc main() {\n\tvar x int = "not a number"\n}\n',
    compile_error_fragment=b"cannot use",
)
