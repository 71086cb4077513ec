"""A small strict DER reader, and the few DER conversions the verifiers share.

The reader does just what the PCK certificate's SGX extension and the loaders of
:mod:`broker.evidence.trust` need: definite lengths only, minimal length encodings, single-byte
tags (ITU-T X.690 §8.1, §10.1). Every violation is a ``MalformedEvidence`` naming what was
being read.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from broker.errors import MalformedEvidence

TAG_BOOLEAN = 0x01
TAG_INTEGER = 0x02
TAG_OCTET_STRING = 0x04
TAG_OID = 0x06
TAG_ENUMERATED = 0x0A
TAG_SEQUENCE = 0x30


class Tlv(NamedTuple):
    """One TLV (a tuple: readers make thousands of them for one certificate extension)."""

    tag: int
    value: bytes


def _read_tlv(data: bytes, pos: int, what: str) -> tuple[Tlv, int]:
    if pos + 2 > len(data):
        raise MalformedEvidence(f"{what}: truncated DER header at offset {pos}")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise MalformedEvidence(f"{what}: multi-byte DER tag at offset {pos}")
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise MalformedEvidence(f"{what}: bad DER length at offset {pos - 1}")
        length = int.from_bytes(data[pos : pos + count], "big")
        if length < 0x80 or data[pos] == 0:
            raise MalformedEvidence(f"{what}: non-minimal DER length at offset {pos - 1}")
        pos += count
    if pos + length > len(data):
        raise MalformedEvidence(f"{what}: DER value of {length} bytes overruns the data")
    return Tlv(tag, data[pos : pos + length]), pos + length


def encoded_length(data: bytes, what: str) -> int:
    """Length of the first complete TLV in ``data`` (to find where a DER object ends)."""
    _, end = _read_tlv(data, 0, what)
    return end


def strip_terminator(data: bytes) -> bytes:
    """``data`` without the NULs after its first DER object when only NULs follow it (a
    C-string terminator, as collateral extracted from Open Enclave endorsements carries);
    otherwise ``data`` unchanged, for the real parser to judge.

    Stripping NULs blindly would eat a signature's last byte when it happens to be zero: the
    object's own length says where it ends.
    """
    try:
        end = encoded_length(data, "DER object")
    except MalformedEvidence:
        return data
    return data[:end] if data.count(0, end) == len(data) - end else data


def parse_one(data: bytes, tag: int, what: str) -> bytes:
    """The value of the single TLV that makes up ``data``, which must carry ``tag``."""
    tlv, end = _read_tlv(data, 0, what)
    if end != len(data):
        raise MalformedEvidence(f"{what}: {len(data) - end} bytes after the DER value")
    return expect(tlv, tag, what)


def children(value: bytes, what: str) -> Iterator[Tlv]:
    """The TLVs concatenated in a constructed value (e.g. a SEQUENCE's contents)."""
    pos = 0
    while pos < len(value):
        tlv, pos = _read_tlv(value, pos, what)
        yield tlv


def oid_pairs(value: bytes, what: str) -> Iterator[tuple[bytes, Tlv]]:
    """The (OBJECT IDENTIFIER contents, value) of each ``SEQUENCE { OBJECT IDENTIFIER, value
    }`` concatenated in ``value``, as X.509 extensions and Intel's SGX extension nest them.

    The same checks and messages as reading each member with :func:`children` and
    :func:`expect`, in one loop: a PCK certificate's SGX extension has some thirty members.
    """
    pos = 0
    while pos < len(value):
        item, pos = _read_tlv(value, pos, what)
        pair = expect(item, TAG_SEQUENCE, what)
        oid, middle = _read_tlv(pair, 0, what) if pair else (None, 0)
        member, end = _read_tlv(pair, middle, what) if middle < len(pair) else (None, middle)
        if oid is None or member is None or end != len(pair):
            count = len(list(children(pair, what)))
            raise MalformedEvidence(f"{what}: member has {count} elements, expected 2")
        yield expect(oid, TAG_OID, what), member


def expect(tlv: Tlv, tag: int, what: str) -> bytes:
    if tlv.tag != tag:
        raise MalformedEvidence(f"{what}: DER tag {tlv.tag:#04x} != {tag:#04x}")
    return tlv.value


#: Arcs are bounded as pyca/cryptography bounds them (128 bits, the widest in use being UUID
#: arcs under 2.25): a wider one could not be compared with any known OID, and one past
#: 14,000 bits could not even be printed (Python's 4,300-digit limit).
_MAX_ARC_BITS = 128


def decode_oid(value: bytes, what: str) -> str:
    """Dotted form of an OBJECT IDENTIFIER's contents (X.690 §8.19)."""
    if not value or value[-1] & 0x80:
        raise MalformedEvidence(f"{what}: truncated OBJECT IDENTIFIER")
    arcs: list[int] = []
    current = 0
    start = True
    for byte in value:
        if start and byte == 0x80:
            raise MalformedEvidence(f"{what}: non-minimal OBJECT IDENTIFIER arc")
        current = (current << 7) | (byte & 0x7F)
        if current >> _MAX_ARC_BITS:
            raise MalformedEvidence(
                f"{what}: OBJECT IDENTIFIER arc wider than {_MAX_ARC_BITS} bits"
            )
        start = not byte & 0x80
        if start:
            arcs.append(current)
            current = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(arc) for arc in (first, arcs[0] - 40 * first, *arcs[1:]))


def encode_oid(dotted: str) -> bytes:
    """The contents of an OBJECT IDENTIFIER (X.690 §8.19), the inverse of :func:`decode_oid`:
    parsers compare the OIDs they know as bytes and decode only the others."""
    first, second, *rest = (int(arc) for arc in dotted.split("."))
    encoded = bytearray()
    for arc in (40 * first + second, *rest):
        groups = [arc & 0x7F]
        higher = arc >> 7
        while higher:
            groups.append(0x80 | (higher & 0x7F))
            higher >>= 7
        encoded += bytes(reversed(groups))
    return bytes(encoded)


def decode_unsigned(value: bytes, what: str) -> int:
    """A non-negative INTEGER or ENUMERATED in minimal two's complement (X.690 §8.3)."""
    if not value:
        raise MalformedEvidence(f"{what}: empty INTEGER")
    if value[0] & 0x80:
        raise MalformedEvidence(f"{what}: negative INTEGER")
    if len(value) > 1 and value[0] == 0 and not value[1] & 0x80:
        raise MalformedEvidence(f"{what}: non-minimal INTEGER")
    return int.from_bytes(value, "big")


def decode_boolean(value: bytes, what: str) -> bool:
    """DER BOOLEAN: exactly one byte, 0x00 or 0xFF (X.690 §11.1)."""
    if value == b"\x00":
        return False
    if value == b"\xff":
        return True
    raise MalformedEvidence(f"{what}: BOOLEAN is not 0x00 or 0xFF")


def encode_tlv(tag: int, value: bytes) -> bytes:
    """One DER TLV with a single-byte tag and the minimal definite length (X.690 §10.1)."""
    size = len(value)
    if size < 0x80:
        return bytes([tag, size]) + value
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + value


def ecdsa_signature(raw: bytes) -> bytes:
    """The DER ECDSA-Sig-Value (RFC 3279 §2.2.3) of a fixed-size big-endian ``r || s``.

    SGX quotes, QE reports and Intel collateral (P-256, 64 bytes) and COSE ES384 (P-384, 96
    bytes, RFC 9053 §2.1) carry their signatures in this raw form; pyca/cryptography verifies
    the DER form.
    """
    half = len(raw) // 2
    return encode_dss_signature(
        int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
    )
