"""Error hints for evidence files (broker/evidence/sniff.py): another TEE's evidence, and
evidence written as base64, hex or wrapped in JSON."""

from __future__ import annotations

import base64
import struct
from pathlib import Path

import pytest

from broker.evidence.claims import Tee
from broker.evidence.sniff import decode, encoding_hint, hint, tee_of

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
SNP = (VECTORS / "snp" / "go-sev-guest-milan-v2" / "attestation.bin").read_bytes()


def _quote(version: int, tee_type: int) -> bytes:
    return struct.pack("<HHI", version, 2, tee_type) + bytes(600)


def test_each_tee_is_recognised_by_its_shape() -> None:
    assert tee_of(SNP) is Tee.SNP
    assert tee_of(_quote(4, 0x81)) is Tee.TDX
    assert tee_of(_quote(5, 0x81)) is Tee.TDX
    assert tee_of(_quote(4, 0)) is Tee.SGX
    assert tee_of(_quote(3, 0)) is Tee.SGX
    assert tee_of(b"\x84\x44\xa1\x01\x38\x22") is Tee.NITRO
    assert tee_of(b"\xd2\x84\x44") is Tee.NITRO
    assert tee_of(b"hello world") is None
    assert tee_of(_quote(4, 0x42)) is None


def test_evidence_for_another_tee_is_named() -> None:
    assert hint(SNP, Tee.TDX) == "this looks like snp evidence, not tdx: pass --tee snp"
    assert hint(_quote(4, 0x81), Tee.SNP) == (
        "this looks like tdx evidence, not snp: pass --tee tdx"
    )
    assert hint(SNP, Tee.SNP) is None  # the right TEE: its own error says what is wrong


def test_encodings_are_named_with_their_remedy() -> None:
    assert hint(base64.b64encode(SNP), Tee.SNP) == (
        "this looks like base64; decode it (base64 -d) or pass --format base64"
    )
    assert hint(SNP.hex().encode() + b"\n", Tee.SNP) == (
        "this looks like hex; decode it (xxd -r -p) or pass --format hex"
    )
    assert encoding_hint(b'["AAAA"]').startswith("this is JSON: take the evidence")
    assert encoding_hint(b'{"report": "AAAA"}') is None  # Trustee's reader names its error
    assert encoding_hint(b"   ") == "the file is empty"
    assert encoding_hint(b"short") is None


def test_decode_reads_each_format_and_refuses_what_it_is_not() -> None:
    assert decode(base64.b64encode(SNP), "base64") == SNP
    assert decode(base64.urlsafe_b64encode(SNP).rstrip(b"="), "base64") == SNP
    assert decode(SNP.hex().encode() + b"\n", "hex") == SNP
    assert decode(SNP, "raw") is SNP
    with pytest.raises(ValueError, match="the file is not hex"):
        decode(b"zz", "hex")
    with pytest.raises(ValueError, match="the file is not base64"):
        decode(b"!!!!", "base64")
    with pytest.raises(ValueError, match="is not raw, base64 or hex"):
        decode(SNP, "pem")
