"""What a file of evidence looks like, before any verification: which TEE made it, or how it
was wrapped. Only for messages that point the right way when verification fails
(``keybroker evidence verify``); never a judgement (docs/cli.md, "Error hints").
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct

from broker.evidence.claims import Tee

#: SEV-SNP ATTESTATION_REPORT: 1184 bytes, VERSION 2 to 5 (SEV-SNP ABI spec 56860, table 23).
_SNP_SIZE = 0x4A0
_SNP_VERSIONS = range(2, 6)
#: Intel DCAP quote header: version (u16), attestation key type (u16: 2 = ECDSA P-256), then
#: in v4/v5 the TEE type (u32: 0 SGX, 0x81 TDX); v3 quotes are SGX's.
_ECDSA_P256 = 2
_TDX = 0x81
_BASE64 = re.compile(rb"[A-Za-z0-9+/_-]+={0,2}")
_HEX = re.compile(rb"(?:[0-9a-fA-F]{2})+")


def tee_of(data: bytes) -> Tee | None:
    """The TEE whose evidence ``data`` is shaped like (raw bytes); None when unknown."""
    if len(data) == _SNP_SIZE and struct.unpack_from("<I", data)[0] in _SNP_VERSIONS:
        return Tee.SNP
    if len(data) >= 48:
        version, key_type, tee_type = struct.unpack_from("<HHI", data)
        if key_type == _ECDSA_P256 and version == 3:
            return Tee.SGX
        if key_type == _ECDSA_P256 and version in (4, 5):
            return Tee.TDX if tee_type == _TDX else Tee.SGX if tee_type == 0 else None
    # COSE_Sign1 (RFC 9052): a CBOR array of four, untagged or under tag 18.
    if data[:1] == b"\x84" or data[:2] == b"\xd2\x84":
        return Tee.NITRO
    return None


def encoding_hint(data: bytes) -> str | None:
    """Why ``data`` may not be raw evidence: base64, hex or JSON text around it."""
    text = data.strip()
    if not text:
        return "the file is empty"
    # A JSON object is read as Trustee's evidence JSON, whose reader names its own errors;
    # other JSON (a list, a string) holds the evidence somewhere inside.
    if text[:1] in (b"[", b'"'):
        try:
            json.loads(text)
        except ValueError:
            return None
        return (
            "this is JSON: take the evidence out of it (only Trustee's evidence JSON object "
            "for the TEE is read as it is)"
        )
    if _HEX.fullmatch(text) and len(text) >= 64:
        return "this looks like hex; decode it (xxd -r -p) or pass --format hex"
    if _BASE64.fullmatch(text) and len(text) >= 64 and _decodes_base64(text):
        return "this looks like base64; decode it (base64 -d) or pass --format base64"
    return None


def _decodes_base64(text: bytes) -> bool:
    padded = text + b"=" * (-len(text) % 4)
    try:
        base64.b64decode(padded.replace(b"-", b"+").replace(b"_", b"/"), validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def decode(data: bytes, form: str) -> bytes:
    """``--format``: the raw evidence in ``data`` written as ``raw``, ``base64`` (either
    alphabet, padding optional) or ``hex``; ValueError when it is not."""
    if form == "raw":
        return data
    text = b"".join(data.split())
    if form == "hex":
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise ValueError("the file is not hex") from None
    if form == "base64":
        if not _BASE64.fullmatch(text) or not _decodes_base64(text):
            raise ValueError("the file is not base64")
        padded = text + b"=" * (-len(text) % 4)
        return base64.b64decode(padded.replace(b"-", b"+").replace(b"_", b"/"))
    raise ValueError(f"format {form!r} is not raw, base64 or hex")


def hint(data: bytes, tee: Tee) -> str | None:
    """A hint for evidence of ``tee`` that did not verify: another TEE's evidence, or
    evidence wrapped in an encoding."""
    other = tee_of(data)
    if other is not None and other != tee:
        return f"this looks like {other.value} evidence, not {tee.value}: pass --tee {other.value}"
    if other is None:
        return encoding_hint(data)
    return None
