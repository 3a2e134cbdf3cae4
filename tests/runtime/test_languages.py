"""Every language adapter on the real local backend: self-test, multi-file with stdin and args,
compile errors, one hostile program each, the compile cache, and the availability report.

No language is skipped: a toolchain missing on this host makes its tests fail (the install
step, scripts/install.d/20-toolchains.sh, installs them all).
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from runtime import metrics
from runtime.languages import LANGUAGES
from runtime.local import LocalBackend
from runtime.types import Limits, RunRequest
from streams.states import Limit, State
from tests.runtime.conftest import Runner, next_id

pytestmark = pytest.mark.sandbox

ALL = sorted(LANGUAGES)
COMPILED = sorted(name for name, lang in LANGUAGES.items() if lang.compiled)
# Run limits for the heavier runtimes (the JVM and mono start slower than the SMALL defaults allow
# under a loaded 2-core CI box); every hostile test below states its own.
ROOMY = {"wall_time_ms": 10_000, "cpu_time_ms": 5_000, "memory_mib": 256, "processes": 64}


async def test_every_language_is_available_with_its_probed_version(backend: LocalBackend) -> None:
    infos = {i.name: i for i in await backend.languages()}
    assert sorted(infos) == ALL
    unavailable = sorted(name for name, info in infos.items() if not info.available)
    assert unavailable == [], f"toolchains missing on this host (run scripts/install.sh): {unavailable}"
    for name, info in infos.items():
        assert info.compiled == LANGUAGES[name].compiled
        assert info.version[:1].isdigit() and "." in info.version, info


@pytest.mark.parametrize("name", ALL)
async def test_self_test_echoes_stdin(run: Runner, name: str) -> None:
    lang = LANGUAGES[name]
    outcome = await run(lang.self_test_code, language=name, stdin=lang.self_test_stdin, **ROOMY)
    assert outcome.state is State.SUCCEEDED, (outcome, outcome.compile_output)
    assert outcome.stdout == lang.self_test_expected_stdout
    assert outcome.limit is None and outcome.exit_code == 0


# Each program prints greet(first line of stdin) from a second source file, then its arguments,
# and the content of a data file: multi-file submissions, stdin and args, for every language.
MULTI_FILE: dict[str, tuple[str, dict[str, str]]] = {
    "python": (
        # The adapter runs `python -I`, which leaves the script's directory off sys.path.
        "import sys\nsys.path.insert(0, '.')\nfrom helper import greet\n"
        "print(greet(sys.stdin.readline().strip()))\nprint(' '.join(sys.argv[1:]))\nprint(open('data.txt').read())",
        {"helper.py": "def greet(name):\n    return 'hello ' + name\n"},
    ),
    "c": (
        '#include <stdio.h>\n#include "greet.h"\n'
        'int main(int argc, char **argv) {\n  char name[64] = {0};\n  scanf("%63s", name);\n  greet(name);\n'
        '  for (int i = 1; i < argc; i++) printf(i > 1 ? " %s" : "%s", argv[i]);\n  printf("\\n");\n'
        '  FILE *f = fopen("data.txt", "r");\n  int c;\n  while ((c = fgetc(f)) != EOF) putchar(c);\n'
        '  printf("\\n");\n  return 0;\n}\n',
        {
            "greet.h": "void greet(const char *name);\n",
            "greet.c": '#include <stdio.h>\nvoid greet(const char *name) { printf("hello %s\\n", name); }\n',
        },
    ),
    "cpp": (
        '#include <fstream>\n#include <iostream>\n#include <sstream>\n#include "greet.hpp"\n'
        "int main(int argc, char **argv) {\n  std::string name;\n  std::cin >> name;\n"
        "  std::cout << greet(name) << '\\n';\n"
        '  for (int i = 1; i < argc; i++) std::cout << (i > 1 ? " " : "") << argv[i];\n'
        '  std::ifstream f("data.txt");\n  std::stringstream s;\n  s << f.rdbuf();\n'
        "  std::cout << '\\n' << s.str() << '\\n';\n}\n",
        {
            "greet.hpp": "#include <string>\nstd::string greet(const std::string &name);\n",
            "greet.cpp": '#include "greet.hpp"\nstd::string greet(const std::string &n) { return "hello " + n; }\n',
        },
    ),
    "csharp": (
        "using System;\nusing System.IO;\npublic static class Program {\n"
        "  public static void Main(string[] args) {\n"
        "    Console.WriteLine(Greeter.Greet(Console.ReadLine().Trim()));\n"
        '    Console.WriteLine(string.Join(" ", args));\n'
        '    Console.WriteLine(File.ReadAllText("data.txt"));\n  }\n}\n',
        {
            "greeter.cs": "public static class Greeter {\n"
            '  public static string Greet(string n) { return "hello " + n; }\n}\n'
        },
    ),
    "go": (
        'package main\n\nimport (\n\t"bufio"\n\t"fmt"\n\t"os"\n\t"strings"\n)\n\n'
        "func main() {\n\tline, _ := bufio.NewReader(os.Stdin).ReadString('\\n')\n"
        '\tfmt.Println(greet(strings.TrimSpace(line)))\n\tfmt.Println(strings.Join(os.Args[1:], " "))\n'
        '\tdata, _ := os.ReadFile("data.txt")\n\tfmt.Println(string(data))\n}\n',
        {"greet.go": 'package main\n\nfunc greet(name string) string { return "hello " + name }\n'},
    ),
    "java": (
        "import java.nio.file.*;\nimport java.util.Scanner;\npublic class Main {\n"
        "  public static void main(String[] args) throws Exception {\n"
        "    System.out.println(Greeter.greet(new Scanner(System.in).nextLine().trim()));\n"
        '    System.out.println(String.join(" ", args));\n'
        '    System.out.println(Files.readString(Path.of("data.txt")));\n  }\n}\n',
        {"Greeter.java": 'class Greeter { static String greet(String n) { return "hello " + n; } }\n'},
    ),
    "javascript": (
        "const { greet } = require('./greet.js');\nconst fs = require('fs');\n"
        "console.log(greet(fs.readFileSync(0, 'utf8').split('\\n')[0].trim()));\n"
        "console.log(process.argv.slice(2).join(' '));\nconsole.log(fs.readFileSync('data.txt', 'utf8'));\n",
        {"greet.js": "exports.greet = (name) => 'hello ' + name;\n"},
    ),
    "typescript": (
        "import { greet } from './greet';\nimport * as fs from 'fs';\n"
        "console.log(greet(fs.readFileSync(0, 'utf8').split('\\n')[0].trim()));\n"
        "console.log(process.argv.slice(2).join(' '));\nconsole.log(fs.readFileSync('data.txt', 'utf8'));\n",
        {"greet.ts": "export function greet(name: string): string {\n  return 'hello ' + name;\n}\n"},
    ),
    "rust": (
        "mod greet;\nuse std::io::BufRead;\nfn main() {\n"
        "    let mut line = String::new();\n    std::io::stdin().lock().read_line(&mut line).unwrap();\n"
        '    println!("{}", greet::greet(line.trim()));\n'
        '    println!("{}", std::env::args().skip(1).collect::<Vec<_>>().join(" "));\n'
        '    println!("{}", std::fs::read_to_string("data.txt").unwrap());\n}\n',
        {"greet.rs": 'pub fn greet(name: &str) -> String {\n    format!("hello {}", name)\n}\n'},
    ),
    "bash": (
        'source ./greet.sh\nread -r name\ngreet "$name"\necho "$*"\ncat data.txt\necho\n',
        {"greet.sh": 'greet() { echo "hello $1"; }\n'},
    ),
}


def test_every_language_has_a_multi_file_case() -> None:
    assert sorted(MULTI_FILE) == ALL


@pytest.mark.parametrize("name", ALL)
async def test_multi_file_with_stdin_and_args(run: Runner, name: str) -> None:
    code, extra = MULTI_FILE[name]
    files = {**extra, "data.txt": "data ✓"}
    outcome = await run(code, language=name, stdin=b"world\n", args=("a b", "c"), files=files, **ROOMY)
    assert outcome.state is State.SUCCEEDED, (outcome, outcome.compile_output)
    assert outcome.stdout.decode().rstrip("\n") == "hello world\na b c\ndata ✓"


@pytest.mark.parametrize("name", COMPILED)
async def test_compile_error_carries_the_compiler_message(run: Runner, name: str) -> None:
    lang = LANGUAGES[name]
    assert lang.compile_error_code is not None and lang.compile_error_fragment
    outcome = await run(lang.compile_error_code, language=name, stdin=b"x")
    assert outcome.state is State.COMPILE_ERROR, outcome
    assert lang.compile_error_fragment in outcome.compile_output, outcome.compile_output
    assert outcome.stdout == b"" and outcome.run_ms == 0 and outcome.compile_ms > 0


# -- one hostile program per language; each asserts its contained outcome ------------------------

GO_FORK_BOMB = """package main

import (
\t"os"
\t"os/exec"
)

func main() {
\tfor {
\t\tcmd := exec.Command(os.Args[0])
\t\tif err := cmd.Start(); err != nil {
\t\t\tpanic(err)
\t\t}
\t}
}
"""
RUST_MEMORY_BOMB = """fn main() {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; 1 << 20]);
    }
}
"""
JAVA_INFINITE_LOOP = """public class Main {
    public static void main(String[] args) {
        long n = 0;
        while (true) { n++; }
    }
}
"""
C_WRITE_OUTSIDE_TMP = r"""#include <errno.h>
#include <stdio.h>
#include <string.h>

static void attempt(const char *path) {
    FILE *f = fopen(path, "w");
    if (f) { printf("%s WROTE\n", path); fclose(f); }
    else printf("%s %s\n", path, errno == EROFS ? "EROFS" : errno == EACCES ? "EACCES" : strerror(errno));
}

int main(void) {
    attempt("/usr/lib/x86_64-linux-gnu/aevatar-evil.so");  /* a bound toolchain path */
    attempt("/evil");                                        /* the read-only root */
    attempt("out/main");                                     /* its own cached binary */
    attempt("main.c");                                       /* its own source */
    attempt("/tmp/fine");                                    /* the one place that is writable */
    return 0;
}
"""
HOSTILE: dict[str, tuple[str, Limit | None, dict[str, int]]] = {
    "go": (GO_FORK_BOMB, Limit.PROCESSES, {"processes": 24, "wall_time_ms": 10_000}),
    "rust": (RUST_MEMORY_BOMB, Limit.MEMORY, {"memory_mib": 64, "wall_time_ms": 10_000}),
    "java": (JAVA_INFINITE_LOOP, Limit.CPU_TIME, {"cpu_time_ms": 1500, "wall_time_ms": 20_000, "memory_mib": 256}),
    "cpp": (
        '#include <iostream>\nint main() { for (;;) std::cout << "flood flood flood\\n"; }\n',
        Limit.OUTPUT,
        {"output_bytes": 65_536},
    ),
    "csharp": (
        "public static class P { public static void Main() { System.Threading.Thread.Sleep(60000); } }\n",
        Limit.WALL_TIME,
        {"wall_time_ms": 3000, "memory_mib": 256},
    ),
    "javascript": (
        "const hoard = [];\nfor (;;) hoard.push(Buffer.alloc(1 << 20, 1));\n",
        Limit.MEMORY,
        {"memory_mib": 96, "wall_time_ms": 10_000},
    ),
    "typescript": (
        "let n: number = 0;\nfor (;;) { n++; }\n",
        Limit.CPU_TIME,
        {"cpu_time_ms": 1000, "wall_time_ms": 20_000, "memory_mib": 256},
    ),
    # bash retries a failed fork for 15 s: the wall timer ends it, and the pids limit names it.
    "bash": ("set -e\nwhile true; do sleep 30 & done\n", Limit.PROCESSES, {"processes": 24, "wall_time_ms": 3000}),
    "python": (
        "with open('/tmp/fill', 'wb') as f:\n    while True:\n        f.write(b'x' * (1 << 20))\n",
        Limit.DISK,
        {"disk_mib": 8},
    ),
}


def test_every_language_has_a_hostile_case() -> None:
    assert sorted([*HOSTILE, "c"]) == ALL


@pytest.mark.parametrize("name", sorted(HOSTILE))
async def test_hostile_program_is_contained_with_the_right_limit(run: Runner, name: str) -> None:
    code, limit, limits = HOSTILE[name]
    async with asyncio.timeout(600):  # a hang, not a slow compile on a loaded machine, fails here
        outcome = await run(code, language=name, **limits)
    assert outcome.state is State.LIMIT_EXCEEDED, (outcome, outcome.compile_output)
    assert outcome.limit is limit


async def test_c_cannot_write_outside_tmp(run: Runner) -> None:
    outcome = await run(C_WRITE_OUTSIDE_TMP, language="c")
    assert outcome.state is State.SUCCEEDED, (outcome, outcome.compile_output)
    lines = dict(line.split(" ", 1) for line in outcome.stdout.decode().splitlines())
    assert lines["/usr/lib/x86_64-linux-gnu/aevatar-evil.so"] in ("EROFS", "EACCES")
    assert lines["/evil"] in ("EROFS", "EACCES")
    assert lines["out/main"] in ("EROFS", "EACCES")  # the cached artifact is bound read-only
    assert lines["main.c"] in ("EROFS", "EACCES")
    assert lines["/tmp/fine"] == "WROTE"


# -- the compile cache ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["rust", "go"])
async def test_identical_submission_skips_the_compile(run: Runner, name: str) -> None:
    lang = LANGUAGES[name]
    code = lang.self_test_code + f"// nonce {uuid.uuid4().hex}\n"  # new to the cache, whatever ran before
    hits, misses = metrics.compile_cache_count(name, hit=True), metrics.compile_cache_count(name, hit=False)
    first = await run(code, language=name, stdin=b"one\n", **ROOMY)
    assert first.state is State.SUCCEEDED and first.stdout == b"one\n", (first, first.compile_output)
    assert metrics.compile_cache_count(name, hit=False) == misses + 1
    assert metrics.compile_cache_count(name, hit=True) == hits
    second = await run(code, language=name, stdin=b"two\n", **ROOMY)
    assert second.state is State.SUCCEEDED and second.stdout == b"two\n"
    assert metrics.compile_cache_count(name, hit=True) == hits + 1
    assert metrics.compile_cache_count(name, hit=False) == misses + 1
    # The counters say the second run took the cached artifacts and compiled nothing (no timing
    # assert: how long rustc takes is the machine's business; bench/ measures cold vs cached).


async def test_a_changed_file_or_flag_is_a_new_cache_key(run: Runner) -> None:
    code, extra = MULTI_FILE["go"]
    nonce = f"// {uuid.uuid4().hex}\n"
    misses = metrics.compile_cache_count("go", hit=False)
    a = await run(code + nonce, language="go", stdin=b"x\n", files={**extra, "data.txt": "1"}, **ROOMY)
    changed = {**extra, "greet.go": extra["greet.go"].replace("hello", "howdy"), "data.txt": "1"}
    b = await run(code + nonce, language="go", stdin=b"x\n", files=changed, **ROOMY)
    assert a.stdout.startswith(b"hello x") and b.stdout.startswith(b"howdy x")
    assert metrics.compile_cache_count("go", hit=False) == misses + 2


async def test_the_probed_version_is_used_by_runs(backend: LocalBackend) -> None:
    # A run of a language whose probe never ran (a fresh id, same backend) still works: the
    # probe runs in the run's own slot first.
    outcome = await backend.run(
        RunRequest(next_id("c"), "c", LANGUAGES["c"].self_test_code, stdin=b"z", limits=Limits(**ROOMY))
    )
    assert outcome.state is State.SUCCEEDED and outcome.stdout == b"z"
