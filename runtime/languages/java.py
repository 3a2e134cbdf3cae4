"""Java 17 (Debian's OpenJDK): javac into out/, then `java -cp out Main`.

The main class must be `Main`, in `Main.java` (no package); other `.java` files of the
submission are compiled with it. JVM flags, for a small sandbox:
- `-XX:MaxRAM={memory_mib}m -XX:MaxRAMPercentage=50`: the heap is sized from the run's memory
  limit (the JVM cannot see the cgroup from inside the sandbox; it would size itself from the
  host's 24 GiB and be OOM-killed before it collected garbage). The rest of the limit covers
  metaspace, the code cache and thread stacks.
- `-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto -XX:-UsePerfData`: fewer threads (the
  pids limit counts threads), faster start, and no hsperfdata file.
The JVM reserves gigabytes of *virtual* memory; only the cgroup's resident limit applies, so no
RLIMIT_AS is set (one would make the JVM fail to start).
"""

from __future__ import annotations

from runtime.languages.base import SOURCES, Language
from runtime.languages.paths import SHARED_LIBS
from runtime.types import Limits

JAVA_HOME = "/usr/lib/jvm/java-17-openjdk-amd64"
_JVM_FLAGS = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xshare:auto", "-XX:-UsePerfData")
_JAVAC = (
    f"{JAVA_HOME}/bin/javac", *(f"-J{flag}" for flag in _JVM_FLAGS), "-J-XX:MaxRAM={memory_mib}m",
    "-encoding", "UTF-8", "-d", "out", SOURCES,
)  # fmt: skip
_JAVA = (
    f"{JAVA_HOME}/bin/java", *_JVM_FLAGS, "-XX:MaxRAM={memory_mib}m", "-XX:MaxRAMPercentage=50", "-cp", "out", "Main",
)  # fmt: skip

JAVA = Language(
    name="java",
    source_file="Main.java",
    compile=_JAVAC,
    run=_JAVA,
    version_probe=(f"{JAVA_HOME}/bin/javac", "-version"),
    # jvm.cfg and the security properties are symlinks into /etc/java-17-openjdk.
    toolchain_paths=(JAVA_HOME, "/etc/java-17-openjdk", *SHARED_LIBS),
    source_suffixes=(".java",),
    artifacts_dir="out",
    compile_limits=Limits(
        wall_time_ms=60_000, cpu_time_ms=60_000, memory_mib=1024, processes=64, output_bytes=65_536, disk_mib=64
    ),
    probe_limits=Limits(
        wall_time_ms=20_000, cpu_time_ms=20_000, memory_mib=512, processes=64, output_bytes=4096, disk_mib=1
    ),
    self_test_code="""import java.io.IOException;

public class Main {
    public static void main(String[] args) throws IOException {
        System.in.transferTo(System.out);
        System.out.flush();
    }
}
""",
    self_test_stdin=b"aevatar self-test java \xe2\x9c\x93\n",
    self_test_expected_stdout=b"aevatar self-test java \xe2\x9c\x93\n",
    compile_error_code='public class Main {\n    public static void main(String[] a) { int x = "no"; }\n}\n',
    compile_error_fragment=b"incompatible types",
)
