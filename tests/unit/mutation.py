"""Helpers for tests that flip bytes of signed DER objects (certificates, CRLs)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from broker.errors import MalformedEvidence
from broker.evidence import der

# A byte flip in a tampered certificate's name can make cryptography warn about the name's
# length while decoding it; that is the tampering showing, not a fault in the code under test.
IGNORE_NAME_WARNINGS = pytest.mark.filterwarnings("ignore:Attribute's length:UserWarning")

#: The two flips the deterministic sweeps apply to every byte: the lowest bit of a byte, and
#: one that turns a tag's constructed bit or an ASCII letter's case.
SWEEP_XORS = (0x01, 0x10)


def flips(data: bytes, xors: tuple[int, ...] = SWEEP_XORS) -> Iterator[tuple[int, int, bytes]]:
    """Every (position, xor, flipped data) of ``data``."""
    for position in range(len(data)):
        for xor in xors:
            flipped = bytearray(data)
            flipped[position] ^= xor
            yield position, xor, bytes(flipped)


def same_signed_content(original: bytes, mutated: bytes) -> bool:
    """Whether the DER certificate or CRL ``mutated`` differs from ``original`` at most in the
    unused-bits count of its signature BIT STRING: the one byte outside the signed bytes,
    the signature algorithm and the signature value, which pyca/cryptography ignores (it
    reads the BIT STRING's bytes). Such a flip verifies as the original; nothing it says
    changed.
    """
    try:
        before = list(der.children(der.parse_one(original, der.TAG_SEQUENCE, "DER"), "DER"))
        after = list(der.children(der.parse_one(mutated, der.TAG_SEQUENCE, "DER"), "DER"))
    except MalformedEvidence:
        return False
    if len(before) != 3 or len(after) != 3:
        return False
    (tbs, algorithm, signature), (tbs2, algorithm2, signature2) = before, after
    same = (tbs, algorithm, signature.tag, signature.value[1:]) == (
        tbs2,
        algorithm2,
        signature2.tag,
        signature2.value[1:],
    )
    return same and _valid_bit_string(signature2.value)


def _valid_bit_string(value: bytes) -> bool:
    """X.690 §8.6.2: an unused-bits count 0..7, the unused bits zero (DER §11.2.1)."""
    if not value:
        return False
    unused = value[0]
    return unused == 0 or (unused <= 7 and len(value) > 1 and value[-1] & ((1 << unused) - 1) == 0)
