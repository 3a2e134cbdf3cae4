"""The Avro single-object codec, byte for byte."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path
from typing import Any

import fastavro
import pytest
from fastavro.schema import fingerprint as fastavro_fingerprint
from msgspec import structs

from streams.codec import (
    MAGIC,
    BadMagic,
    Codec,
    SchemaSet,
    SchemaVersion,
    TruncatedBody,
    UnknownFingerprint,
    crc64_avro,
    default_codec,
    load_version,
)
from streams.records import (
    ALL_RECORDS,
    AppliedLimits,
    CaseVerdict,
    Checker,
    ExecutionEvent,
    ExecutionRequest,
    ExecutionResult,
    JudgeCase,
    Judgement,
    Provenance,
    RequestLimits,
    RunOutcome,
)
from streams.states import State

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def zigzag(n: int) -> bytes:
    """Avro's long encoding, written out by hand for the expected bytes."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        b = z & 0x7F
        z >>= 7
        if z:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def avro_string(s: str) -> bytes:
    raw = s.encode()
    return zigzag(len(raw)) + raw


def test_crc64_avro_agrees_with_an_independent_implementation() -> None:
    for schema in ('"int"', '"string"', '{"type":"record","name":"x.Y","fields":[]}'):
        ours = struct.pack("<Q", crc64_avro(schema.encode())).hex()
        assert ours == fastavro_fingerprint(schema, "CRC-64-AVRO")


def test_cancel_request_bytes_exactly() -> None:
    codec = default_codec()
    data = codec.encode(
        "CancelRequest", {"execution_id": "abc", "requested_at_ms": 1000, "reason": "user", "requested_by": None}
    )
    v1 = load_version(SCHEMAS / "CancelRequest.v1.avsc")
    expected = (
        b"\xc3\x01"
        + struct.pack("<Q", crc64_avro(v1.canonical.encode()))
        + avro_string("abc")
        + zigzag(1000)
        + zigzag(1)
        + avro_string("user")  # union branch 1: string
        + zigzag(0)  # union branch 0: null
    )
    assert data == expected


def test_request_bytes_exactly() -> None:
    req = ExecutionRequest(
        id="r1", language="python", code="print(1)", created_at_ms=7, limits=RequestLimits(memory_mib=128)
    )
    v4 = load_version(SCHEMAS / "ExecutionRequest.v4.avsc")
    v3_body = (
        avro_string("r1")
        + avro_string("python")
        + avro_string("print(1)")
        + avro_string("")
        + zigzag(0)  # args: empty array
        + zigzag(0)  # files: empty map
        + b"\x00"  # network false
        + zigzag(0)
        + zigzag(0)
        + zigzag(1)
        + zigzag(128)
        + zigzag(0)
        + zigzag(0)
        + zigzag(0)  # limits
        + zigzag(0)  # callback_url null
        + avro_string("default")
        + zigzag(0)  # tenant, priority
        + zigzag(0)
        + zigzag(0)  # max_attempts null, trace_id null
        + zigzag(7)
        + zigzag(0)  # tests: empty array (v3)
        + zigzag(0)  # checker null (v3)
        + b"\x00"  # stop_on_first_failure false (v3)
    )
    body = v3_body + zigzag(0) + zigzag(0)  # batch_id null, rejudge_of null (v4)
    assert req.encode() == v4.header + body
    assert ExecutionRequest.decode(req.encode()) == req
    # An older writer's body is the newer one without the newer fields: it reads with their defaults.
    v3 = load_version(SCHEMAS / "ExecutionRequest.v3.avsc")
    assert ExecutionRequest.decode(v3.header + v3_body) == req
    v2 = load_version(SCHEMAS / "ExecutionRequest.v2.avsc")
    assert ExecutionRequest.decode(v2.header + v3_body[:-3]) == req


def _write(version: SchemaVersion, record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, version.parsed, record)
    return version.header + out.getvalue()


def _read_as(version: SchemaVersion, data: bytes) -> dict[str, Any]:
    """What a reader whose newest schema is `version` reads (it has the writer's file, by fingerprint)."""
    writer = default_codec().schemas.by_fingerprint[struct.unpack("<Q", data[2:10])[0]]
    record = fastavro.schemaless_reader(io.BytesIO(data[10:]), writer.parsed, version.parsed)
    assert isinstance(record, dict)
    return record


JUDGED = ExecutionRequest(
    id="j1",
    language="c",
    code="int main(){}",
    created_at_ms=5,
    tests=[JudgeCase(stdin="1 2\n", expected_stdout="3\n", wall_time_ms=500), JudgeCase(args=["x"])],
    checker=Checker(kind="float", abs_tolerance=0.5),
    stop_on_first_failure=True,
)


def test_a_judged_request_round_trips() -> None:
    assert ExecutionRequest.decode(JUDGED.encode()) == JUDGED


def test_an_old_reader_reads_a_judged_request_without_its_new_fields() -> None:
    v2 = load_version(SCHEMAS / "ExecutionRequest.v2.avsc")
    old = _read_as(v2, JUDGED.encode())
    assert (old["id"], old["code"], old["created_at_ms"]) == ("j1", "int main(){}", 5)
    assert "tests" not in old and "checker" not in old


def test_an_old_writers_request_reads_as_unjudged() -> None:
    v2 = load_version(SCHEMAS / "ExecutionRequest.v2.avsc")
    fields = {k: v for k, v in JUDGED.to_avro().items() if k not in ("tests", "checker", "stop_on_first_failure")}
    req = ExecutionRequest.decode(_write(v2, fields))
    assert (req.tests, req.checker, req.stop_on_first_failure) == ([], None, False)


def _judged_event() -> ExecutionEvent:
    judgement = Judgement(
        passed=1,
        total=2,
        first_failure=1,
        checker="trailing_whitespace",
        cases=[
            CaseVerdict(index=0, verdict="ACCEPTED", state="SUCCEEDED", exit_code=0, run_ms=3, stdout=b"3\n"),
            CaseVerdict(index=1, verdict="WRONG_ANSWER", state="SUCCEEDED", line=1, expected_line="3", actual_line="4"),
        ],
    )
    return ExecutionEvent(
        execution_id="j1",
        seq=5,
        state=State.FAILED,
        at_ms=9,
        attempt=1,
        request=JUDGED.encode(),
        outcome=RunOutcome(exit_code=0, stdout=b"4\n", judgement=judgement),
    )


def test_a_judged_event_and_result_round_trip_and_old_readers_skip_the_judgement() -> None:
    event = _judged_event()
    assert ExecutionEvent.decode(event.encode()) == event
    old = _read_as(load_version(SCHEMAS / "ExecutionEvent.v1.avsc"), event.encode())
    assert old["outcome"]["stdout"] == b"4\n" and "judgement" not in old["outcome"]
    assert event.outcome is not None
    result = ExecutionResult(
        id="j1", language="c", state=State.FAILED, created_at_ms=1, finished_at_ms=9, judgement=event.outcome.judgement
    )
    assert ExecutionResult.decode(result.encode()) == result
    old_result = _read_as(load_version(SCHEMAS / "ExecutionResult.v1.avsc"), result.encode())
    assert old_result["state"] == "FAILED" and "judgement" not in old_result


def test_old_events_and_results_read_with_no_judgement() -> None:
    event = structs.replace(_judged_event(), outcome=RunOutcome(exit_code=0, stdout=b"x"))
    v1 = load_version(SCHEMAS / "ExecutionEvent.v1.avsc")
    fields = event.to_avro()
    fields["outcome"] = {k: v for k, v in fields["outcome"].items() if k != "judgement"}
    decoded = ExecutionEvent.decode(_write(v1, fields))
    assert decoded.outcome is not None and decoded.outcome.judgement is None and decoded.outcome.stdout == b"x"
    result = ExecutionResult(id="r", language="python", state=State.SUCCEEDED, created_at_ms=1, finished_at_ms=2)
    r1 = load_version(SCHEMAS / "ExecutionResult.v1.avsc")
    old = {k: v for k, v in result.to_avro().items() if k != "judgement"}
    assert ExecutionResult.decode(_write(r1, old)) == result


@pytest.mark.parametrize("record_type", ALL_RECORDS)
def test_structs_mirror_the_current_schema(record_type: type) -> None:
    current = default_codec().schemas.current[record_type.SCHEMA]  # type: ignore[attr-defined]
    raw = json.loads(Path(SCHEMAS / f"{current.name}.v{current.version}.avsc").read_text())
    assert [f["name"] for f in raw["fields"]] == list(record_type.__struct_fields__)  # type: ignore[attr-defined]


def test_old_version_is_read_by_the_current_reader() -> None:
    v1 = load_version(SCHEMAS / "ExecutionRequest.v1.avsc")
    old = {
        "id": "old",
        "language": "python",
        "code": "print(2)",
        "stdin": "x",
        "args": ["a"],
        "files": {"f.txt": "data"},
        "network": False,
        "limits": {
            "wall_time_ms": 1000,
            "cpu_time_ms": None,
            "memory_mib": None,
            "processes": None,
            "output_bytes": None,
            "disk_mib": None,
        },
        "callback_url": None,
        "created_at_ms": 42,
    }
    out = io.BytesIO()
    fastavro.schemaless_writer(out, v1.parsed, old)
    data = MAGIC + struct.pack("<Q", v1.fingerprint) + out.getvalue()
    req = ExecutionRequest.decode(data)
    assert req.id == "old" and req.files == {"f.txt": "data"} and req.limits.wall_time_ms == 1000
    # Fields that v1 did not have take the defaults of the newest version.
    assert (req.tenant, req.priority, req.max_attempts) == ("default", 0, None)


def test_bad_magic() -> None:
    with pytest.raises(BadMagic, match="C3 01"):
        default_codec().decode(b"hello world")
    with pytest.raises(BadMagic):
        default_codec().decode(b"")


def test_unknown_fingerprint() -> None:
    with pytest.raises(UnknownFingerprint, match="0x0000000000000001"):
        default_codec().decode(MAGIC + struct.pack("<Q", 1) + b"\x00")


def test_truncated_header_and_body() -> None:
    data = ExecutionRequest(id="r", language="python", code="x" * 50).encode()
    with pytest.raises(TruncatedBody):
        default_codec().decode(data[:6])
    with pytest.raises(TruncatedBody):
        default_codec().decode(data[:-5])
    with pytest.raises(TruncatedBody, match="trailing"):
        default_codec().decode(data + b"\x00")


def test_every_version_in_the_dir_is_loaded() -> None:
    names = {(v.name, v.version) for v in SchemaSet.from_dir(SCHEMAS).by_fingerprint.values()}
    assert {("ExecutionRequest", 1), ("ExecutionRequest", 2), ("ExecutionRequest", 3)} <= names
    assert {("ExecutionEvent", 1), ("ExecutionEvent", 2), ("ExecutionResult", 1), ("ExecutionResult", 2)} <= names
    assert {("ExecutionRequest", 4), ("ExecutionEvent", 3), ("ExecutionResult", 3)} <= names
    current = Codec(SchemaSet.from_dir(SCHEMAS)).schemas.current
    assert (current["ExecutionRequest"].version, current["ExecutionEvent"].version) == (4, 3)
    assert current["ExecutionResult"].version == 3


PROVENANCE = Provenance(
    code_sha256="ab" * 32,
    files_sha256={"data.txt": "cd" * 32},
    toolchain="c",
    toolchain_version="gcc 12.2.0",
    limits=AppliedLimits(
        wall_time_ms=5000, cpu_time_ms=5000, memory_mib=256, processes=64, output_bytes=1, disk_mib=64
    ),
    backend="local",
    executor="executor-1",
)


def test_a_batched_rejudge_request_round_trips_and_old_readers_skip_its_new_fields() -> None:
    req = structs.replace(JUDGED, batch_id="b1", rejudge_of="j0")
    assert ExecutionRequest.decode(req.encode()) == req
    old = _read_as(load_version(SCHEMAS / "ExecutionRequest.v3.avsc"), req.encode())
    assert old["tests"] and old["stop_on_first_failure"] is True
    assert "batch_id" not in old and "rejudge_of" not in old


def test_an_old_writers_request_has_no_batch_and_rejudges_nothing() -> None:
    v3 = load_version(SCHEMAS / "ExecutionRequest.v3.avsc")
    fields = {k: v for k, v in JUDGED.to_avro().items() if k not in ("batch_id", "rejudge_of")}
    req = ExecutionRequest.decode(_write(v3, fields))
    assert (req.batch_id, req.rejudge_of) == (None, None) and req == JUDGED


def test_provenance_round_trips_in_events_and_results_and_old_readers_skip_it() -> None:
    event = structs.replace(_judged_event(), outcome=RunOutcome(exit_code=0, stdout=b"4\n", provenance=PROVENANCE))
    assert ExecutionEvent.decode(event.encode()) == event
    old_event = _read_as(load_version(SCHEMAS / "ExecutionEvent.v2.avsc"), event.encode())
    assert old_event["outcome"]["stdout"] == b"4\n" and "provenance" not in old_event["outcome"]
    result = ExecutionResult(
        id="j2",
        language="c",
        state=State.SUCCEEDED,
        created_at_ms=1,
        finished_at_ms=9,
        batch_id="b1",
        rejudge_of="j1",
        provenance=PROVENANCE,
    )
    assert ExecutionResult.decode(result.encode()) == result
    old_result = _read_as(load_version(SCHEMAS / "ExecutionResult.v2.avsc"), result.encode())
    assert old_result["id"] == "j2" and not {"batch_id", "rejudge_of", "provenance"} & set(old_result)


def test_old_writers_events_and_results_read_with_no_provenance() -> None:
    event = structs.replace(_judged_event(), outcome=RunOutcome(exit_code=0, stdout=b"x"))
    fields = event.to_avro()
    fields["outcome"] = {k: v for k, v in fields["outcome"].items() if k != "provenance"}
    decoded = ExecutionEvent.decode(_write(load_version(SCHEMAS / "ExecutionEvent.v2.avsc"), fields))
    assert decoded == event and decoded.outcome is not None and decoded.outcome.provenance is None
    result = ExecutionResult(id="r", language="c", state=State.SUCCEEDED, created_at_ms=1, finished_at_ms=2)
    old = {k: v for k, v in result.to_avro().items() if k not in ("batch_id", "rejudge_of", "provenance")}
    assert ExecutionResult.decode(_write(load_version(SCHEMAS / "ExecutionResult.v2.avsc"), old)) == result
