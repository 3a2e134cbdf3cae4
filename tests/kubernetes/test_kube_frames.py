"""Pure: the runner's framed container log (runtime/kube_frames.py) and how its end refines a decision."""

from __future__ import annotations

import base64
import json

from hypothesis import given
from hypothesis import strategies as st

from runtime.kube_frames import HEADER, FrameDecoder, RunnerEnd, decode_log, log_limit_bytes
from runtime.kube_outcome import Decision, runner_decision
from streams.states import Limit, State


def framed(chunks: list[tuple[str, bytes]], end: dict[str, object] | None) -> bytes:
    lines = [HEADER]
    for stream, data in chunks:
        lines.append(f"{'o' if stream == 'stdout' else 'e'} ".encode() + base64.b64encode(data) + b"\n")
    if end is not None:
        lines.append(b"x " + json.dumps(end).encode() + b"\n")
    return b"".join(lines)


END = {"exit_code": 3, "signal": None, "limit": None, "cpu_time_ms": 12, "memory_peak_kib": 4096,
       "run_ms": 20, "oom_kills": 0, "truncated": None, "error": None}  # fmt: skip


@given(
    st.lists(st.tuples(st.sampled_from(["stdout", "stderr"]), st.binary(min_size=1, max_size=50)), max_size=8),
    st.lists(st.integers(min_value=1, max_value=40), max_size=30),
)
def test_any_split_of_the_log_decodes_to_the_same_streams(chunks: list[tuple[str, bytes]], cuts: list[int]) -> None:
    log = framed(chunks, END)
    decoder = FrameDecoder()
    got = {"stdout": b"", "stderr": b""}
    pos = 0
    for cut in [*cuts, len(log)]:
        for stream, data in decoder.feed(log[pos : pos + cut]):
            got[stream] += data
        pos += cut
    for stream, data in decoder.feed(log[pos:]):
        got[stream] += data
    assert got["stdout"] == b"".join(d for s, d in chunks if s == "stdout")
    assert got["stderr"] == b"".join(d for s, d in chunks if s == "stderr")
    assert decoder.end == RunnerEnd(3, None, None, 12, 4096, 20, 0, None, None)


def test_a_log_without_the_runner_is_the_programs_stdout() -> None:
    log = decode_log(b"hello\n")
    assert (log.stdout, log.stderr, log.end) == (b"hello\n", b"", None)
    partial = decode_log(b"aevatar")  # a prefix of the header that never completes is output too
    assert (partial.stdout, partial.end) == (b"aevatar", None)


def test_limits_and_setup_errors() -> None:
    ended = decode_log(framed([], {**END, "exit_code": None, "signal": 9, "limit": "output", "truncated": "stderr"}))
    assert ended.end is not None and (ended.end.limit, ended.end.truncated) == (Limit.OUTPUT, "stderr")
    assert log_limit_bytes(1_048_576) > 1_048_576 * 4 // 3


def end(**kw: object) -> RunnerEnd:
    base = dict(exit_code=None, signal=None, limit=None, cpu_time_ms=1, memory_peak_kib=1, run_ms=1, oom_kills=0,
                error=None)  # fmt: skip
    base.update(kw)
    return RunnerEnd(**base)  # type: ignore[arg-type]


def test_the_runner_decides_a_program_end_exactly() -> None:
    guessed = Decision(State.FAILED, None, None, 25)  # the pod status said 153 = 128 + SIGXFSZ
    assert runner_decision(guessed, end(exit_code=153), False) == Decision(State.FAILED, None, 153, None)
    assert runner_decision(guessed, end(exit_code=0), False) == Decision(State.SUCCEEDED, None, 0, None)
    assert runner_decision(guessed, end(signal=9), True) == Decision(State.LIMIT_EXCEEDED, Limit.MEMORY, None, 9)
    assert runner_decision(guessed, end(signal=9, limit=Limit.WALL_TIME), False).limit is Limit.WALL_TIME
    assert runner_decision(guessed, end(signal=9), False) == Decision(State.FAILED, None, None, 9)
    assert runner_decision(guessed, end(error="cannot execute x"), False).state is State.ERROR
    assert runner_decision(guessed, None, False) is guessed
    cancelled = Decision(State.CANCELLED, None, None, None)
    assert runner_decision(cancelled, end(exit_code=0), False) is cancelled
