"""SEV-SNP past the signatures: mutated content re-signed with the synthetic AMD kit
(``broker/simulate/snp.py``, an RSA-2048 test ARK/ASK), so the TCB comparison, the VCEK
extension decoders and the claims are reached with every signature valid.

The first byte chooses the mode. Even: the rest overlays the signed part of a valid report
(bytes 0x000..0x29F), which the kit's VCEK key signs; the report is then verified and its
claims built. Odd: the rest is a list of AMD extensions, each ``selector, length (2 bytes,
big-endian), DER value``, put in a VCEK that the kit's ASK signs, which then endorses a
valid report.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from broker.evidence.snp import verify
from broker.evidence.snp.abi import SIGNED_SIZE
from broker.evidence.snp.endorsement import (
    AMD_OID,
    OID_CSP_ID,
    OID_HWID,
    OID_PRODUCT_NAME,
    OID_STRUCT_VERSION,
    encode_hwid,
    encode_ia5,
    encode_integer,
    spl_layout,
    spl_oid,
)
from broker.simulate.snp import SnpKit
from fuzz.engine import Harness, Target

NOW = datetime(2025, 3, 1, tzinfo=UTC)
#: A fixed chip, so that committed seeds stay meaningful for every kit.
CHIP_ID = bytes(range(64))
_NAMED = (OID_STRUCT_VERSION, OID_PRODUCT_NAME, OID_HWID, OID_CSP_ID)


def _oid(selector: int) -> x509.ObjectIdentifier:
    """0-3: structVersion, productName, hwID, cspID; 4-12: SPL arcs 1-9; else another
    AMD arc (1.3.6.1.4.1.3704.1.<selector>)."""
    if selector < len(_NAMED):
        return _NAMED[selector]
    if selector < 13:
        return spl_oid(selector - 3)
    return x509.ObjectIdentifier(f"{AMD_OID}.{selector}")


def extensions(data: bytes) -> list[tuple[x509.ObjectIdentifier, bytes]]:
    found: dict[x509.ObjectIdentifier, bytes] = {}  # a certificate holds each OID once
    pos = 0
    while pos + 3 <= len(data):
        selector, size = data[pos], int.from_bytes(data[pos + 1 : pos + 3], "big")
        found.setdefault(_oid(selector), data[pos + 3 : pos + 3 + size])
        pos += 3 + size
    return list(found.items())


def encode(items: list[tuple[int, bytes]]) -> bytes:
    return b"".join(bytes([sel]) + len(value).to_bytes(2, "big") + value for sel, value in items)


_KIT: SnpKit | None = None


def kit() -> SnpKit:
    global _KIT  # noqa: PLW0603 - one kit per process (key generation takes a second)
    if _KIT is None:
        _KIT = SnpKit.generate(chip_id=CHIP_ID, rsa_bits=2048)
    return _KIT


def setup() -> Target:
    snp = kit()
    roots = [snp.root()]
    good = snp.sign(snp.report())
    collateral = snp.collateral()
    key = snp.vcek_key

    def target(data: bytes) -> None:
        if not data:
            return
        if data[0] & 1:
            vcek = snp.issue_endorsement(extensions(data[1:]))
            der = vcek.public_bytes(serialization.Encoding.DER)
            verify(good, {**collateral, "vcek": der}, now=NOW, extra_roots=roots).document()
            return
        body = (data[1:] + good[len(data) - 1 : SIGNED_SIZE])[:SIGNED_SIZE]
        r, s = decode_dss_signature(key.sign(body, ec.ECDSA(hashes.SHA384())))
        tail = good[SIGNED_SIZE + 144 :]
        report = body + r.to_bytes(72, "little") + s.to_bytes(72, "little") + tail
        verify(report, collateral, now=NOW, extra_roots=roots).document()

    return target


def seeds() -> Iterator[tuple[str, bytes]]:
    snp = kit()
    yield "report", b"\x00" + snp.report().to_bytes()[:SIGNED_SIZE]
    tcb = snp.tcb
    items = [(0, encode_integer(0)), (1, encode_ia5("Milan-B0"))]
    for name, arc in spl_layout(False):
        items.append((arc + 3, encode_integer(0 if name is None else getattr(tcb, name))))
    items.append((2, encode_hwid(CHIP_ID)))
    yield "vcek", b"\x01" + encode(items)


HARNESS = Harness("snp_signed", setup, seeds, __doc__ or "", max_len=4096)
