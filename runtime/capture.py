"""Pure: byte-capped capture of stdout and stderr under one shared budget.

Bytes, never characters: invalid UTF-8 is stored as is. Memory stays bounded by the
cap whatever the program prints; past it, bytes are counted and dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Stream = Literal["stdout", "stderr"]


@dataclass(slots=True)
class Capture:
    cap_bytes: int
    data: dict[str, bytearray] = field(default_factory=lambda: {"stdout": bytearray(), "stderr": bytearray()})
    seen: dict[str, int] = field(default_factory=lambda: {"stdout": 0, "stderr": 0})
    truncated: dict[str, bool] = field(default_factory=lambda: {"stdout": False, "stderr": False})

    @property
    def kept_bytes(self) -> int:
        return len(self.data["stdout"]) + len(self.data["stderr"])

    @property
    def overflowed(self) -> bool:
        return self.truncated["stdout"] or self.truncated["stderr"]

    def add(self, stream: Stream, chunk: bytes) -> tuple[bytes, int]:
        """Keep what fits; return (kept bytes, their offset in the stream). Sets `truncated` past the cap."""
        offset = len(self.data[stream])
        room = max(0, self.cap_bytes - self.kept_bytes)
        kept = chunk[:room]
        self.data[stream] += kept
        self.seen[stream] += len(chunk)
        if len(kept) < len(chunk):
            self.truncated[stream] = True
        return bytes(kept), offset
