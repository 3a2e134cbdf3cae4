"""Java's entry point: the public top-level class (or the class with main) names the file and the class
run. Pure tests of the finder, then real Java in real sandboxes (the local backend)."""

from __future__ import annotations

import pytest

from runtime.languages import LANGUAGES
from runtime.languages.java import JAVA, entry_point
from runtime.local import LocalBackend
from runtime.types import Limits, RunRequest
from streams.states import State
from tests.runtime.conftest import next_id

HELLO = """public class HelloWorld {
    public static void main(String[] args) {
        System.out.println("Hello, World!");
    }
}
"""


@pytest.mark.parametrize(
    ("code", "main"),
    [
        (HELLO, "HelloWorld"),
        ("class Main { public static void main(String[] a) {} }", "Main"),
        ("import java.util.*;\nclass A {}\nclass B { static public void main(String... a) {} }", "B"),
        ("package com.example;\npublic final class App { }", "com.example.App"),
        ("@Deprecated\npublic class Tagged { }", "Tagged"),
        ("public record Point(int x) { public static void main(String[] a) {} }", "Point"),
        ("public interface Runner { static void main(String[] a) {} }", "Runner"),
        # Nested types, comments, strings, characters and text blocks are not declarations.
        ("class Outer { static class In { public static void main(String[] a) {} } }\nclass Real {"
         " public static void main(String[] a) {} }", "Real"),
        ('// public class Comment {}\n/* public class Block {} */\nchar c = \'{\';\n'
         'public class Code { String s = "public class Str {"; String t = """\n } class Tb {\n"""; }', "Code"),
        ("interface Nothing {}", None),
        ("", None),
    ],
)  # fmt: skip
def test_the_entry_point_is_the_public_class_else_the_class_with_main(code: str, main: str | None) -> None:
    assert entry_point(code) == main


def test_the_adapter_is_named_after_the_entry_point() -> None:
    assert LANGUAGES["java"] is JAVA
    named = JAVA.for_source(HELLO)
    assert named.source_file == "HelloWorld.java" and named.run[-1] == "HelloWorld"
    assert named.compile == JAVA.compile and named.run[:-1] == JAVA.run[:-1]
    assert JAVA.for_source("package p; public class Q {}").run[-1] == "p.Q"
    assert JAVA.for_source("public class Main {}") is JAVA
    assert JAVA.for_source("no class at all") is JAVA  # javac says what is wrong with it


JAVA_LIMITS = Limits(wall_time_ms=20_000, cpu_time_ms=20_000, memory_mib=512, processes=64, disk_mib=64)


@pytest.mark.sandbox
async def test_public_class_hello_world_prints_its_line(backend: LocalBackend) -> None:
    outcome = await backend.run(RunRequest(next_id("java"), "java", HELLO, limits=JAVA_LIMITS))
    assert outcome.state is State.SUCCEEDED, outcome
    assert outcome.stdout == b"Hello, World!\n"


@pytest.mark.sandbox
async def test_a_class_with_main_beside_other_classes_runs_and_a_package_too(backend: LocalBackend) -> None:
    code = 'class Helper { static String hi() { return "hi"; } }\nclass Prog {\n'
    code += "    public static void main(String[] args) { System.out.println(Helper.hi() + args.length); }\n}\n"
    outcome = await backend.run(RunRequest(next_id("java"), "java", code, args=("x",), limits=JAVA_LIMITS))
    assert (outcome.state, outcome.stdout) == (State.SUCCEEDED, b"hi1\n"), outcome
    packaged = "package demo.app;\npublic class Tool { public static void main(String[] a) {"
    packaged += " System.out.println(Tool.class.getName()); } }\n"
    outcome = await backend.run(RunRequest(next_id("java"), "java", packaged, limits=JAVA_LIMITS))
    assert (outcome.state, outcome.stdout) == (State.SUCCEEDED, b"demo.app.Tool\n"), outcome
