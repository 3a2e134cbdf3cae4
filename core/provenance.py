"""Provenance of a verdict, the pure part: content hashes of what was run.

A result carries the sha256 of its code and of each file (streams.records.Provenance), so a
re-judged submission can be shown to be the same bytes as the original, and any verdict can be
explained and reproduced.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping


def sha256_hex(text: str) -> str:
    """The sha256 of a text's UTF-8 bytes, as the code and files travel (Avro strings)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def files_sha256(files: Mapping[str, str]) -> dict[str, str]:
    """Each file's sha256, by its name."""
    return {name: sha256_hex(content) for name, content in sorted(files.items())}
