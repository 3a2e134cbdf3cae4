"""Avro single-object encoding over every schema version shipped in `schemas/`.

On the wire: ``C3 01``, the 8-byte little-endian CRC-64-AVRO fingerprint of the
writer schema's Parsing Canonical Form, then the Avro binary body. A reader finds
the writer schema by its fingerprint and resolves it against the newest version
of the same record, so schemas evolve without a registry server.
"""

from __future__ import annotations

import io
import json
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import parse_schema, to_parsing_canonical_form

from streams.errors import StreamsError

MAGIC = b"\xc3\x01"
HEADER_BYTES = len(MAGIC) + 8
SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
_FILE_NAME = re.compile(r"(?P<name>[A-Za-z]+)\.v(?P<version>[0-9]+)\.avsc")  # fullmatch


class CodecError(StreamsError):
    """Bytes that cannot be decoded, or a record that cannot be encoded."""


class BadMagic(CodecError):
    pass


class UnknownFingerprint(CodecError):
    def __init__(self, fingerprint: int) -> None:
        self.fingerprint = fingerprint
        super().__init__(f"unknown writer schema fingerprint {fingerprint:#018x}")


class TruncatedBody(CodecError):
    pass


class WrongRecord(CodecError):
    pass


class EncodeError(CodecError):
    pass


# CRC-64-AVRO, as the Avro specification defines it.
_EMPTY = 0xC15D213AA4D7A795


@cache
def _crc_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY & -(fp & 1))
        table.append(fp)
    return tuple(table)


def crc64_avro(data: bytes) -> int:
    table = _crc_table()
    fp = _EMPTY
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


@dataclass(frozen=True, slots=True)
class SchemaVersion:
    name: str  # short record name, e.g. "ExecutionRequest"
    version: int
    parsed: Any
    canonical: str
    fingerprint: int

    @property
    def header(self) -> bytes:
        return MAGIC + struct.pack("<Q", self.fingerprint)


def load_version(path: Path) -> SchemaVersion:
    match = _FILE_NAME.fullmatch(path.name)
    if match is None:
        raise CodecError(f"{path.name}: schema files are named <Record>.v<N>.avsc")
    raw = json.loads(path.read_text())
    parsed = parse_schema(raw, _write_hint=False)
    canonical = to_parsing_canonical_form(raw)
    return SchemaVersion(match["name"], int(match["version"]), parsed, canonical, crc64_avro(canonical.encode()))


class SchemaSet:
    """Every version of every record found in a schema directory."""

    def __init__(self, versions: list[SchemaVersion]) -> None:
        self.by_fingerprint = {v.fingerprint: v for v in versions}
        self.current: dict[str, SchemaVersion] = {}
        for v in sorted(versions, key=lambda v: v.version):
            self.current[v.name] = v

    @classmethod
    def from_dir(cls, directory: Path = SCHEMA_DIR) -> SchemaSet:
        return cls([load_version(p) for p in sorted(directory.glob("*.avsc"))])


class Codec:
    def __init__(self, schemas: SchemaSet) -> None:
        self.schemas = schemas

    def encode(self, name: str, record: Mapping[str, Any]) -> bytes:
        try:
            writer = self.schemas.current[name]
        except KeyError:
            raise EncodeError(f"no schema for record {name!r}") from None
        return self.encode_with(writer, record)

    @staticmethod
    def encode_with(writer: SchemaVersion, record: Mapping[str, Any]) -> bytes:
        out = io.BytesIO()
        out.write(writer.header)
        try:
            fastavro.schemaless_writer(out, writer.parsed, dict(record))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise EncodeError(f"{writer.name}: {exc}") from exc
        return out.getvalue()

    def decode(self, data: bytes, expect: str | None = None) -> tuple[str, dict[str, Any]]:
        """Decode one record; returns its record name and its fields in the current schema."""
        if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
            raise BadMagic(f"expected single-object marker C3 01, got {data[:2].hex() or 'nothing'}")
        if len(data) < HEADER_BYTES:
            raise TruncatedBody(f"header is {len(data)} bytes, needs {HEADER_BYTES}")
        (fingerprint,) = struct.unpack("<Q", data[len(MAGIC) : HEADER_BYTES])
        writer = self.schemas.by_fingerprint.get(fingerprint)
        if writer is None:
            raise UnknownFingerprint(fingerprint)
        if expect is not None and writer.name != expect:
            raise WrongRecord(f"expected a {expect}, got a {writer.name}")
        reader = self.schemas.current[writer.name]
        body = io.BytesIO(data[HEADER_BYTES:])
        try:
            record = fastavro.schemaless_reader(body, writer.parsed, reader.parsed)
        except EOFError as exc:
            raise TruncatedBody(f"{writer.name} body ends early: {exc}") from exc
        except (ValueError, TypeError, IndexError, KeyError, UnicodeDecodeError, OverflowError) as exc:
            raise TruncatedBody(f"{writer.name} body is corrupt: {exc}") from exc
        if body.tell() != len(data) - HEADER_BYTES:
            raise TruncatedBody(f"{writer.name} body has {len(data) - HEADER_BYTES - body.tell()} trailing bytes")
        assert isinstance(record, dict)
        return writer.name, record


@cache
def default_codec() -> Codec:
    return Codec(SchemaSet.from_dir())
