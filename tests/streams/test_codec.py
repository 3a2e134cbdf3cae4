"""The Avro single-object codec, byte for byte."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import fastavro
import pytest
from fastavro.schema import fingerprint as fastavro_fingerprint

from streams.codec import (
    MAGIC,
    BadMagic,
    Codec,
    SchemaSet,
    TruncatedBody,
    UnknownFingerprint,
    crc64_avro,
    default_codec,
    load_version,
)
from streams.records import ALL_RECORDS, ExecutionRequest, RequestLimits

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
    v2 = load_version(SCHEMAS / "ExecutionRequest.v2.avsc")
    body = (
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
    )
    assert req.encode() == v2.header + body
    assert ExecutionRequest.decode(req.encode()) == req


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
    # Fields that v1 did not have take the v2 defaults.
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
    assert ("ExecutionRequest", 1) in names and ("ExecutionRequest", 2) in names
    assert Codec(SchemaSet.from_dir(SCHEMAS)).schemas.current["ExecutionRequest"].version == 2
