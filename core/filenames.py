"""Pure: the one policy for the names of a request's files (issue 21).

Every layer calls this module: the gateway's and the validation processor's rules
(processors/rules.py), the workspace that writes the files (runtime/workspace.py), the compile
step and its cache (runtime/local.py), and the Kubernetes manifest (runtime/kube_manifest.py).
So whatever passes validation can be written and compiled, and whatever cannot is refused at
the door naming the file.

A name is a relative POSIX path below the working directory:
- segments separated by single `/`, none empty or `.`, none starting with `..` (`..`, and
  names that read like it), none longer than 255 bytes of
  UTF-8 (the file system's NAME_MAX counts bytes, not characters);
- at most MAX_DEPTH directories deep, and `/box/<name>` within PATH_MAX;
- no NUL, no control character (C0, DEL, C1), no backslash, and nothing that is not valid
  UTF-8 (a lone surrogate);
- a leading `-` or `@` is allowed: commands get such names as `./-name` (`argv_path`), never
  as an option or a response file.
Across the request's names: no file is also a directory of another ("a" and "a/b"), and none
takes a name the language adapter writes itself (its main source file, its artifacts
directory and whatever is in it). The platform stores the files under names of its own (their
index), so no encoding of a name can make two names collide or one name grow too long.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

NAME_MAX_BYTES = 255  # one path segment, in bytes (Linux NAME_MAX)
PATH_MAX_BYTES = 4096  # a whole path, in bytes, with its terminating NUL (Linux PATH_MAX)
WORKDIR = "/box"  # the sandbox's working directory: the longest absolute form of a name
MAX_DEPTH = 8  # directories above a file
MAX_NAME_BYTES = PATH_MAX_BYTES - len(WORKDIR) - 2  # "/box/" + name + NUL within PATH_MAX


@dataclass(frozen=True, slots=True)
class Reserved:
    """What a language adapter writes in the working directory itself."""

    source_file: str = ""  # the main source file ("main.py")
    artifacts_dir: str = "."  # the compile step's output directory ("out"; "." for none of its own)


@dataclass(frozen=True, slots=True)
class NameProblem:
    index: int  # position of the name in the order given
    name: str
    message: str  # completes "file name <name> ..."


def _bad_char(ch: str) -> bool:
    return ch == "\\" or unicodedata.category(ch) in ("Cc", "Cs")


def name_problem(name: str) -> str | None:
    """Why one file name cannot be used, or None."""
    if not name:
        return "must not be empty"
    if any(_bad_char(ch) for ch in name):
        return "must not contain NUL, control characters, backslashes or invalid UTF-8"
    if name.startswith("/"):
        return "must be relative to the working directory"
    segments = name.split("/")
    if any(seg in ("", ".") or seg.startswith("..") for seg in segments):
        return "must not have empty or '.' segments, nor segments starting with '..'"
    if any(len(seg.encode()) > NAME_MAX_BYTES for seg in segments):
        return f"has a segment longer than {NAME_MAX_BYTES} bytes of UTF-8"
    if len(segments) - 1 > MAX_DEPTH:
        return f"is more than {MAX_DEPTH} directories deep"
    if len(name.encode()) > MAX_NAME_BYTES:
        return f"is longer than {MAX_NAME_BYTES} bytes of UTF-8"
    return None


def _reserved_problem(name: str, reserved: Reserved) -> str | None:
    top = name.split("/", 1)[0]
    if reserved.source_file and name == reserved.source_file:
        return "is the language's own source file (that is `code`)"
    if reserved.source_file and top == reserved.source_file:
        return "would make the language's source file a directory"
    if reserved.artifacts_dir not in ("", ".") and top == reserved.artifacts_dir:
        return f"is in the compiler's output directory {reserved.artifacts_dir!r}"
    return None


def files_problem(names: Iterable[str], reserved: Reserved = Reserved()) -> NameProblem | None:
    """The first name (in the order given) that cannot be used beside the others, or None."""
    ordered = list(names)
    for i, name in enumerate(ordered):
        problem = name_problem(name) or _reserved_problem(name, reserved)
        if problem is not None:
            return NameProblem(i, name, problem)
    files: set[str] = set()
    for i, name in enumerate(ordered):
        if name in files:
            return NameProblem(i, name, "is given twice")
        files.add(name)
    for name in ordered:
        parts = name.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent in files:
                return NameProblem(ordered.index(parent), parent, f"is a file, but {name!r} needs it as a directory")
    return None


def argv_path(name: str) -> str:
    """`name` as a command-line argument that no command takes for an option or a response file."""
    return name if name[:1].isalnum() or name[:1] == "_" else "./" + name


def argv_paths(names: Sequence[str]) -> list[str]:
    return [argv_path(n) for n in names]
