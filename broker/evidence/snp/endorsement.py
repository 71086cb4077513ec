"""VCEK and VLEK certificates: loading, and the AMD KDS extensions they carry.

Source: AMD "Versioned Chip Endorsement Key (VCEK) Certificate and KDS Interface
Specification" (publication 57230), §3 "Certificate extensions" (Tables "VCEK Certificate
Extensions" and "VLEK Certificate Extensions"). Every AMD extension lives under
1.3.6.1.4.1.3704.1: structVersion (.1), productName (.2, IA5String such as ``Milan-B0``), the
security patch levels (.3.x, INTEGER), hwID (.4, the chip id: 64 bytes, 8 on Turin) on a VCEK,
cspID (.5, the cloud provider) on a VLEK.

The extension values are tiny DER items; the few lines below read and write them so that no
ASN.1 library is needed. Encoding is used by the synthetic kit (:mod:`broker.simulate.snp`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from broker.errors import MalformedEvidence
from broker.evidence.snp.abi import TCB_LAYOUT, TURIN_TCB_LAYOUT
from broker.evidence.trust import load_certificates, zero_serial_tolerated
from broker.lru import memoized

AMD_OID = "1.3.6.1.4.1.3704.1"
OID_STRUCT_VERSION = x509.ObjectIdentifier(f"{AMD_OID}.1")
OID_PRODUCT_NAME = x509.ObjectIdentifier(f"{AMD_OID}.2")
OID_HWID = x509.ObjectIdentifier(f"{AMD_OID}.4")
OID_CSP_ID = x509.ObjectIdentifier(f"{AMD_OID}.5")
_SPL_PREFIX = f"{AMD_OID}.3."

#: The SPL extensions by their last OID arc (1.3.6.1.4.1.3704.1.3.<arc>).
SPL_NAMES: Mapping[int, str] = MappingProxyType(
    {
        1: "blSPL",
        2: "teeSPL",
        3: "snpSPL",
        4: "spl4",
        5: "spl5",
        6: "spl6",
        7: "spl7",
        8: "ucodeSPL",
        9: "fmcSPL",
    }
)
#: For each byte of a TCB_VERSION (abi.TCB_LAYOUT, abi.TURIN_TCB_LAYOUT), the SPL arc that
#: endorses it. Milan/Genoa: bl, tee, spl4-7 (reserved), snp, ucode; Turin: fmc, bl, tee, snp,
#: spl5-7 (reserved), ucode.
SPL_ARCS: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 3, 8)
TURIN_SPL_ARCS: tuple[int, ...] = (9, 1, 2, 3, 5, 6, 7, 8)


def spl_layout(turin: bool) -> tuple[tuple[str | None, int], ...]:
    """For each byte of a TCB_VERSION: its part name (None if reserved) and the SPL arc."""
    if turin:
        return tuple(zip(TURIN_TCB_LAYOUT, TURIN_SPL_ARCS, strict=True))
    return tuple(zip(TCB_LAYOUT, SPL_ARCS, strict=True))


#: Subject common names AMD KDS gives the two endorsement key kinds.
KIND_BY_COMMON_NAME: Mapping[str, str] = MappingProxyType({"SEV-VCEK": "vcek", "SEV-VLEK": "vlek"})

_TAG_INTEGER = 0x02
_TAG_OCTET_STRING = 0x04
_TAG_IA5STRING = 0x16
_HWID_SIZES = (64, 8)


@dataclass(frozen=True, slots=True)
class Endorsement:
    """A parsed VCEK or VLEK certificate (unverified: :mod:`.verify` checks its chain)."""

    certificate: x509.Certificate
    kind: str | None
    """``vcek`` or ``vlek`` from the subject common name; None for anything else."""
    public_key: ec.EllipticCurvePublicKey | None
    """The report-signing key when it is an EC P-384 key, else None."""
    struct_version: int | None
    product_name: str | None
    spls: Mapping[int, int]
    """SPL values by OID arc (1 = blSPL ... 9 = fmcSPL)."""
    hwid: bytes | None
    csp_id: str | None


@memoized(1024)
def load_endorsement(data: bytes) -> Endorsement:
    """Parse a VCEK/VLEK certificate (DER or PEM, exactly one) and its AMD extensions.

    Cached by content: a VCEK is an immutable fact, so a repeat costs a dictionary lookup.
    ``MalformedEvidence`` when the certificate or one of its AMD extensions does not parse.
    """
    with zero_serial_tolerated():
        certificates = load_certificates(data)
    if len(certificates) != 1:
        raise MalformedEvidence(
            f"expected one VCEK/VLEK certificate, found {len(certificates)} certificates"
        )
    cert = certificates[0]
    spls: dict[int, int] = {}
    struct_version = product_name = hwid = csp_id = None
    for extension in cert.extensions:
        dotted = extension.oid.dotted_string
        value = extension.value
        if not dotted.startswith(AMD_OID) or not isinstance(value, x509.UnrecognizedExtension):
            continue
        raw = value.value
        if extension.oid == OID_STRUCT_VERSION:
            struct_version = decode_integer(raw, "structVersion")
        elif extension.oid == OID_PRODUCT_NAME:
            product_name = decode_ia5(raw, "productName")
        elif extension.oid == OID_HWID:
            hwid = decode_hwid(raw)
        elif extension.oid == OID_CSP_ID:
            csp_id = decode_ia5(raw, "cspID")
        elif dotted.startswith(_SPL_PREFIX) and dotted[len(_SPL_PREFIX) :].isdigit():
            arc = int(dotted[len(_SPL_PREFIX) :])
            spls[arc] = decode_integer(raw, SPL_NAMES.get(arc, dotted))
    key = cert.public_key()
    common = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    kind = KIND_BY_COMMON_NAME.get(str(common[0].value)) if common else None
    return Endorsement(
        certificate=cert,
        kind=kind,
        public_key=key
        if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP384R1)
        else None,
        struct_version=struct_version,
        product_name=product_name,
        spls=MappingProxyType(spls),
        hwid=hwid,
        csp_id=csp_id,
    )


# --- DER values -------------------------------------------------------------------------------


def _der_content(raw: bytes, tag: int, what: str) -> bytes:
    """The content octets of one DER item with ``tag`` spanning all of ``raw``."""
    if len(raw) < 2 or raw[0] != tag:
        raise MalformedEvidence(f"{what}: not a DER item with tag {tag:#04x}: {raw[:8].hex()}")
    length, offset = raw[1], 2
    if length & 0x80:
        count = length & 0x7F
        if count not in (1, 2) or len(raw) < 2 + count:
            raise MalformedEvidence(f"{what}: bad DER length")
        length, offset = int.from_bytes(raw[2 : 2 + count], "big"), 2 + count
    if offset + length != len(raw):
        raise MalformedEvidence(f"{what}: DER length {length} != {len(raw) - offset} bytes")
    return raw[offset:]


#: AMD's integer extensions (structVersion, the SPLs, each a byte of a TCB_VERSION) fit in a
#: few bits; a longer INTEGER is refused before it is converted or printed (Python refuses
#: to print an integer of more than 4,300 digits).
_MAX_INTEGER_BYTES = 8


def decode_integer(raw: bytes, what: str) -> int:
    content = _der_content(raw, _TAG_INTEGER, what)
    if not content:
        raise MalformedEvidence(f"{what}: empty INTEGER")
    if len(content) > _MAX_INTEGER_BYTES:
        raise MalformedEvidence(
            f"{what}: INTEGER of {len(content)} bytes; at most {_MAX_INTEGER_BYTES} expected"
        )
    value = int.from_bytes(content, "big", signed=True)
    if value < 0:
        raise MalformedEvidence(f"{what}: negative value {value}")
    return value


def decode_ia5(raw: bytes, what: str) -> str:
    content = _der_content(raw, _TAG_IA5STRING, what)
    if not content.isascii():
        raise MalformedEvidence(f"{what}: IA5String is not ASCII")
    return content.decode("ascii")


def decode_hwid(raw: bytes) -> bytes:
    """hwID as AMD KDS encodes it: the raw chip id octets (older certificates) or a DER
    OCTET STRING around them (newer ones); 64 bytes, 8 on Turin."""
    if len(raw) in _HWID_SIZES:
        return raw
    content = _der_content(raw, _TAG_OCTET_STRING, "hwID")
    if len(content) not in _HWID_SIZES:
        raise MalformedEvidence(f"hwID is {len(content)} bytes, expected 64 (8 on Turin)")
    return content


def _der(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes((tag, size)) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(length))) + length + content


def encode_integer(value: int) -> bytes:
    return _der(_TAG_INTEGER, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def encode_ia5(text: str) -> bytes:
    return _der(_TAG_IA5STRING, text.encode("ascii"))


def encode_hwid(hwid: bytes) -> bytes:
    """The newer KDS encoding: a DER OCTET STRING."""
    return _der(_TAG_OCTET_STRING, hwid)


def spl_oid(arc: int) -> x509.ObjectIdentifier:
    return x509.ObjectIdentifier(f"{_SPL_PREFIX}{arc}")
