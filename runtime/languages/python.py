"""Python 3.11 from Debian (/usr/bin/python3.11: world-readable, unlike the pyenv one under /root)."""

from __future__ import annotations

from runtime.languages.base import SOURCE, Language

PYTHON = Language(
    name="python",
    source_file="main.py",
    # -I: isolated (no PYTHON* env, no user site, no cwd on sys.path for -c); -S: no site import.
    run=("/usr/bin/python3.11", "-I", "-S", SOURCE),
    version_probe=("/usr/bin/python3.11", "-I", "-S", "--version"),
    toolchain_paths=(
        "/usr/bin/python3.11",
        "/usr/lib/python3.11",
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib64",
    ),
    self_test_code="import sys\nsys.stdout.write(sys.stdin.read())\n",
    self_test_stdin=b"aevatar self-test \xe2\x9c\x93\n",
    self_test_expected_stdout=b"aevatar self-test \xe2\x9c\x93\n",
)
