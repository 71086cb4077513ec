"""The protobuf wire format (https://protobuf.dev/programming-guides/encoding/), just enough
to read go-tpm-tools' ``attest.Attestation``: a message is a sequence of fields, each a
varint key ``(number << 3) | wire type`` and a value (0 varint, 1 eight bytes, 2 a varint
length then that many bytes, 5 four bytes). Groups (3, 4) are refused. Fields a reader does
not use are skipped, as every protobuf reader skips them; for a repeated scalar field the
last value wins, as protobuf specifies.
"""

from __future__ import annotations

from collections.abc import Sequence

from broker.errors import MalformedEvidence

VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5
_MAX_VARINT_BYTES = 10

Field = tuple[int, int, int | bytes]
"""(field number, wire type, value: an int for varint and fixed, bytes for delimited)."""


def _varint(data: bytes, pos: int, where: str) -> tuple[int, int]:
    value = shift = 0
    for count in range(_MAX_VARINT_BYTES):
        if pos >= len(data):
            raise MalformedEvidence(f"{where}: varint runs past the end at offset {pos}")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            if count == _MAX_VARINT_BYTES - 1 and byte > 1:
                break
            return value, pos
    raise MalformedEvidence(f"{where}: varint longer than 64 bits at offset {pos}")


def fields(data: bytes, where: str) -> list[Field]:
    """Every field of one message, in order; ``MalformedEvidence`` when it does not parse."""
    out: list[Field] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos, where)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise MalformedEvidence(f"{where}: field number 0 at offset {pos}")
        value: int | bytes
        if wire == VARINT:
            value, pos = _varint(data, pos, where)
        elif wire in (FIXED64, FIXED32):
            size = 8 if wire == FIXED64 else 4
            if pos + size > len(data):
                raise MalformedEvidence(f"{where}: field {number} runs past the end")
            value, pos = int.from_bytes(data[pos : pos + size], "little"), pos + size
        elif wire == LENGTH_DELIMITED:
            length, pos = _varint(data, pos, where)
            if pos + length > len(data):
                raise MalformedEvidence(
                    f"{where}: field {number} of {length} bytes runs past the end"
                )
            value, pos = data[pos : pos + length], pos + length
        else:
            raise MalformedEvidence(f"{where}: field {number} has wire type {wire}")
        out.append((number, wire, value))
    return out


def all_bytes(message: Sequence[Field], number: int, where: str) -> list[bytes]:
    """Every value of a length-delimited field (a repeated bytes or message field)."""
    values = []
    for found, wire, value in message:
        if found != number:
            continue
        if wire != LENGTH_DELIMITED or not isinstance(value, bytes):
            raise MalformedEvidence(f"{where}: field {number} is not length-delimited")
        values.append(value)
    return values


def last_bytes(message: Sequence[Field], number: int, where: str) -> bytes | None:
    values = all_bytes(message, number, where)
    return values[-1] if values else None


def last_varint(message: Sequence[Field], number: int, where: str) -> int | None:
    found: int | None = None
    for field_number, wire, value in message:
        if field_number != number:
            continue
        if wire != VARINT or not isinstance(value, int):
            raise MalformedEvidence(f"{where}: field {number} is not a varint")
        found = value
    return found


def encode(message: Sequence[Field]) -> bytes:
    """The inverse of :func:`fields` (for tests and the simulated guest)."""
    out = bytearray()
    for number, wire, value in message:
        out += _encode_varint(number << 3 | wire)
        if wire == VARINT and isinstance(value, int):
            out += _encode_varint(value)
        elif wire == FIXED64 and isinstance(value, int):
            out += value.to_bytes(8, "little")
        elif wire == FIXED32 and isinstance(value, int):
            out += value.to_bytes(4, "little")
        elif wire == LENGTH_DELIMITED and isinstance(value, bytes):
            out += _encode_varint(len(value)) + value
        else:
            raise ValueError(f"field {number}: wire type {wire} does not fit {type(value)}")
    return bytes(out)


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)
