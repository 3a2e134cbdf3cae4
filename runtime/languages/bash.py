"""Bash 5 from Debian. The whole of /usr/bin is bound read-only: a shell program expects the
coreutils (cat, sort, …), and every binary there still runs inside the same sandbox."""

from __future__ import annotations

from runtime.languages.base import SOURCE, Language
from runtime.languages.paths import SHARED_LIBS

BASH = Language(
    name="bash",
    source_file="main.sh",
    run=("/usr/bin/bash", SOURCE),
    version_probe=("/usr/bin/bash", "--version"),
    toolchain_paths=("/usr/bin", "/usr/share/terminfo", *SHARED_LIBS),
    self_test_code="cat\n",
    self_test_stdin=b"aevatar self-test bash \xe2\x9c\x93\n",
    self_test_expected_stdout=b"aevatar self-test bash \xe2\x9c\x93\n",
)
