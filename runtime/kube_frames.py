"""Pure: the container log that aevatar-runner (runtime/pod_runner.c) writes, decoded.

The runner is the first process of every sandbox container. It keeps the program's stdout and
stderr apart and reports how the program ended, on its own stdout, one line per frame:

    aevatar-runner 1                 the protocol's first line
    o <base64>                       program stdout
    e <base64>                       program stderr
    x {"exit_code": ..., ...}        the end (RunnerEnd)

The program cannot write to that log (it gets pipes, and the runner is non-dumpable PID 1), so a
frame is the runner's word. A log that does not begin with the first line (an image without the
runner) is passed through as the program's stdout, as the pod log API gives it.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field

from runtime.capture import Stream
from streams.states import Limit

HEADER = b"aevatar-runner 1\n"
RUNNER_PATH = "/usr/local/bin/aevatar-runner"
_STREAMS: dict[bytes, Stream] = {b"o": "stdout", b"e": "stderr"}
_LIMITS = {"wall_time": Limit.WALL_TIME, "output": Limit.OUTPUT, "memory": Limit.MEMORY}


@dataclass(frozen=True, slots=True)
class RunnerEnd:
    """How the program ended, from waitid and the container's cgroup, as the runner saw it."""

    exit_code: int | None
    signal: int | None
    limit: Limit | None  # a limit the runner enforced or the cgroup recorded (an OOM kill)
    cpu_time_ms: int
    memory_peak_kib: int
    run_ms: int
    oom_kills: int
    error: str | None  # the runner could not start the program: the platform's failure
    truncated: Stream | None = None  # the stream whose bytes passed the output cap


def log_limit_bytes(output_bytes: int) -> int:
    """How many bytes of framed log carry `output_bytes` of output (base64 is 4/3, plus frames)."""
    return output_bytes * 4 // 3 + output_bytes // 1024 + 65_536


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_end(text: bytes) -> RunnerEnd | None:
    try:
        raw = json.loads(text)
    except ValueError:
        return None
    if not isinstance(raw, dict):
        return None
    limit = raw.get("limit")
    error = raw.get("error")
    truncated = raw.get("truncated")
    return RunnerEnd(
        exit_code=_int(raw.get("exit_code")),
        signal=_int(raw.get("signal")),
        limit=_LIMITS.get(limit) if isinstance(limit, str) else None,
        cpu_time_ms=max(0, _int(raw.get("cpu_time_ms")) or 0),
        memory_peak_kib=max(0, _int(raw.get("memory_peak_kib")) or 0),
        run_ms=max(0, _int(raw.get("run_ms")) or 0),
        oom_kills=max(0, _int(raw.get("oom_kills")) or 0),
        error=error if isinstance(error, str) else None,
        truncated="stdout" if truncated == "stdout" else "stderr" if truncated == "stderr" else None,
    )


@dataclass(slots=True)
class FrameDecoder:
    """Feed the log as it arrives; get the program's output back, stream by stream, in order."""

    framed: bool | None = None  # None until the first line (or its absence) is seen
    end: RunnerEnd | None = None
    _pending: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[tuple[Stream, bytes]]:
        if self.framed is False:
            return [("stdout", data)] if data else []
        self._pending += data
        if self.framed is None:
            if len(self._pending) < len(HEADER) and HEADER.startswith(bytes(self._pending)):
                return []
            self.framed = bytes(self._pending[: len(HEADER)]) == HEADER
            if not self.framed:
                raw = bytes(self._pending)
                self._pending.clear()
                return [("stdout", raw)] if raw else []
            del self._pending[: len(HEADER)]
        out: list[tuple[Stream, bytes]] = []
        while True:
            newline = self._pending.find(b"\n")
            if newline < 0:
                break
            line = bytes(self._pending[:newline])
            del self._pending[: newline + 1]
            tag, _, body = line.partition(b" ")
            stream = _STREAMS.get(tag)
            if stream is not None:
                try:
                    chunk = base64.b64decode(body, validate=True)
                except (binascii.Error, ValueError):
                    continue
                if out and out[-1][0] == stream:
                    out[-1] = (stream, out[-1][1] + chunk)
                elif chunk:
                    out.append((stream, chunk))
            elif tag == b"x":
                self.end = parse_end(body)
        return out

    def flush(self) -> list[tuple[Stream, bytes]]:
        """At the log's end: a short log that was only ever a prefix of the first line is output too."""
        if self.framed is None and self._pending:
            self.framed = False
            raw = bytes(self._pending)
            self._pending.clear()
            return [("stdout", raw)]
        return []


@dataclass(frozen=True, slots=True)
class DecodedLog:
    stdout: bytes
    stderr: bytes
    end: RunnerEnd | None


def decode_log(log: bytes) -> DecodedLog:
    """A whole container log: the program's two streams and the runner's end (None: not framed)."""
    decoder = FrameDecoder()
    parts: dict[Stream, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
    for stream, chunk in [*decoder.feed(log), *decoder.flush()]:
        parts[stream] += chunk
    return DecodedLog(bytes(parts["stdout"]), bytes(parts["stderr"]), decoder.end)
