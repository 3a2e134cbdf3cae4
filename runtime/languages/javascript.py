"""JavaScript: the host's Node.js 20 (/usr/bin/node), CommonJS `main.js`; other files are `require`-able."""

from __future__ import annotations

from runtime.languages.base import SOURCE, Language
from runtime.languages.paths import SHARED_LIBS

NODE = "/usr/bin/node"

JAVASCRIPT = Language(
    name="javascript",
    source_file="main.js",
    run=(NODE, SOURCE),
    version_probe=(NODE, "--version"),
    toolchain_paths=(NODE, *SHARED_LIBS),
    probe_limits=None,
    self_test_code="process.stdin.pipe(process.stdout);\n",
    self_test_stdin=b"aevatar self-test js \xe2\x9c\x93\n",
    self_test_expected_stdout=b"aevatar self-test js \xe2\x9c\x93\n",
)
