"""C#: Debian's mono-mcs (C# 7) and the mono runtime: `mcs` into out/main.exe, then `mono`.

mcs is run as `mono mcs.exe` (/usr/bin/mcs is a /bin/sh wrapper around exactly that).
Every `.cs` file of the submission is compiled. Memory: mono's SGen GC reserves address space
lazily; the cgroup counts resident memory only. mcs itself needs about 60 MiB.
"""

from __future__ import annotations

from runtime.languages.base import SOURCES, Language
from runtime.languages.paths import SHARED_LIBS
from runtime.types import Limits

MONO = "/usr/bin/mono"
MCS_EXE = "/usr/lib/mono/4.5/mcs.exe"
# The runtime's native helpers (System.Native: file I/O, the console) live directly in /usr/lib.
_MONO_PATHS = (
    MONO,
    "/usr/lib/mono",
    "/usr/lib/libmono-native.so",
    "/usr/lib/libmono-native.so.0",
    "/usr/lib/libMonoPosixHelper.so",
    "/etc/mono",
    *SHARED_LIBS,
)

CSHARP = Language(
    name="csharp",
    source_file="main.cs",
    compile=(MONO, MCS_EXE, "-nologo", "-optimize+", "-out:out/main.exe", SOURCES),
    run=(MONO, "out/main.exe"),
    version_probe=(MONO, MCS_EXE, "--version"),
    toolchain_paths=_MONO_PATHS,
    env={"HOME": "/tmp", "MONO_SHARED_DIR": "/tmp"},
    source_suffixes=(".cs",),
    artifacts_dir="out",
    compile_limits=Limits(
        wall_time_ms=60_000, cpu_time_ms=60_000, memory_mib=512, processes=64, output_bytes=65_536, disk_mib=64
    ),
    probe_limits=Limits(
        wall_time_ms=20_000, cpu_time_ms=20_000, memory_mib=256, processes=64, output_bytes=4096, disk_mib=1
    ),
    self_test_code="""using System;
using System.IO;

public static class Program {
    public static void Main() {
        using (Stream input = Console.OpenStandardInput())
        using (Stream output = Console.OpenStandardOutput()) {
            input.CopyTo(output);
        }
    }
}
""",
    self_test_stdin=b"aevatar self-test c# \xe2\x9c\x93\n",
    self_test_expected_stdout=b"aevatar self-test c# \xe2\x9c\x93\n",
    compile_error_code='public static class Program {\n    public static void Main() { int x = "no"; }\n}\n',
    compile_error_fragment=b"error CS0029",
)
