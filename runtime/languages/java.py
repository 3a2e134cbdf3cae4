"""Java 17 (Debian's OpenJDK): javac into out/, then `java -cp out <main class>`.

The entry point is found in the source, as javac and a Java user expect: the public top-level
class (javac requires it to be in `<Name>.java`), else the first top-level class that declares
`main`, else `Main`. The source is written as `<Name>.java` and run as `Name` (`pkg.Name` under a
`package` declaration), so `public class HelloWorld` runs as HelloWorld. Other `.java` files of
the submission are compiled with it. JVM flags, for a small sandbox:
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

import dataclasses
import re

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

DEFAULT_MAIN = "Main"

# Comments, string and character literals (text blocks first): blanked before looking for declarations,
# so a `class` in a comment or a string is never taken for one.
_NOT_CODE = re.compile(
    r'"""(?:\\.|[^\\])*?"""'  # a text block
    r'|"(?:\\.|[^"\\\n])*"'  # a string
    r"|'(?:\\.|[^'\\\n])*'"  # a character
    r"|//[^\n]*|/\*.*?\*/",  # comments
    re.S,
)
_IDENT = r"[A-Za-z_$][A-Za-z0-9_$]*"
_PACKAGE = re.compile(rf"^\s*package\s+({_IDENT}(?:\s*\.\s*{_IDENT})*)\s*;")
_TYPE = re.compile(rf"\b(class|interface|enum|record)\s+({_IDENT})")
_MAIN = re.compile(r"\bstatic\b[^;{}()=]*\bvoid\s+main\s*\(")


def entry_point(code: str) -> str | None:
    """Pure: the main class of a Java source, qualified by its package, or None when none is declared.

    The public top-level type if there is one (javac insists it is in `<Name>.java`), else the first
    top-level class whose body (not a nested type's) declares a static `main`.
    """
    text = _NOT_CODE.sub(lambda m: re.sub(r"[^\n]", " ", m.group()), code)
    package = _PACKAGE.match(text)
    prefix = re.sub(r"\s+", "", package.group(1)) + "." if package else ""
    public: str | None = None
    with_main: str | None = None
    for kind, name, body, head in _top_level_types(text):
        if "public" in head.split() and public is None:
            public = name
        if with_main is None and kind in {"class", "enum", "record"} and _MAIN.search(_depth_zero(body)):
            with_main = name
    found = public or with_main
    return prefix + found if found is not None else None


def _top_level_types(text: str) -> list[tuple[str, str, str, str]]:
    """(kind, name, body, modifiers before it) of each type declared at brace depth 0."""
    found: list[tuple[str, str, str, str]] = []
    depth, i, start_of_decl = 0, 0, 0
    while i < len(text):
        ch = text[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth = max(0, depth - 1)
            if depth == 0:
                start_of_decl = i + 1
        elif ch == ";" and depth == 0:
            start_of_decl = i + 1
        elif depth == 0:
            match = _TYPE.match(text, i)
            if match is not None and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] in "_$")):
                open_at = text.find("{", match.end())
                if open_at < 0:
                    break
                close_at = _matching_brace(text, open_at)
                head = re.sub(r"@" + _IDENT + r"(\([^)]*\))?", " ", text[start_of_decl:i])
                found.append((match.group(1), match.group(2), text[open_at + 1 : close_at], head))
                i = close_at + 1
                start_of_decl = i
                continue
        i += 1
    return found


def _matching_brace(text: str, open_at: int) -> int:
    depth = 0
    for j in range(open_at, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return len(text)


def _depth_zero(body: str) -> str:
    """A type body with every nested block blanked: its own members' declarations only."""
    out, depth = [], 0
    for ch in body:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif depth == 0:
            out.append(ch)
            continue
        out.append(" ")
    return "".join(out)


@dataclasses.dataclass(frozen=True, slots=True)
class JavaLanguage(Language):
    """Java: the source file and the class run are named after the entry point the code declares."""

    def for_source(self, code: str) -> Language:
        qualified = entry_point(code)
        if qualified is None or qualified == DEFAULT_MAIN:
            return self
        name = qualified.rsplit(".", 1)[-1]
        return dataclasses.replace(self, source_file=f"{name}.java", run=(*self.run[:-1], qualified))


JAVA = JavaLanguage(
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
