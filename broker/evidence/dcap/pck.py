"""The SGX extensions of a PCK certificate (OID 1.2.840.113741.1.13.1).

Layout from Intel's "SGX PCK Certificate and Certificate Revocation List Profile
Specification", §1.3.5: a SEQUENCE of (OID, value) pairs under the SGX extension arc:

    .1  PPID                 OCTET STRING (16)
    .2  TCB                  SEQUENCE of (OID, value):
          .2.1 ... .2.16     SGX TCB component SVNs, INTEGER (0..255)
          .2.17              PCESVN, INTEGER (0..65535)
          .2.18              CPUSVN, OCTET STRING (16)
    .3  PCE-ID               OCTET STRING (2)
    .4  FMSPC                OCTET STRING (6)
    .5  SGX Type             ENUMERATED (0 standard, 1 scalable, 2 scalable with integrity)
    .6  Platform Instance ID OCTET STRING (16)     (Platform CA certificates only)
    .7  Configuration        SEQUENCE of (OID, BOOLEAN): .7.1 dynamicPlatform,
                             .7.2 cachedKeys, .7.3 SMTEnabled (Platform CA certificates only)

Unknown members are skipped (Intel has added .6 and .7 over time); a missing mandatory
member, a duplicate or a wrong size is ``MalformedEvidence``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography import x509

from broker.errors import MalformedEvidence
from broker.evidence import der

SGX_EXTENSION_OID = "1.2.840.113741.1.13.1"
_PPID = SGX_EXTENSION_OID + ".1"
_TCB = SGX_EXTENSION_OID + ".2"
_PCESVN = _TCB + ".17"
_CPUSVN = _TCB + ".18"
_PCE_ID = SGX_EXTENSION_OID + ".3"
_FMSPC = SGX_EXTENSION_OID + ".4"
_SGX_TYPE = SGX_EXTENSION_OID + ".5"
_PLATFORM_INSTANCE_ID = SGX_EXTENSION_OID + ".6"
_CONFIGURATION = SGX_EXTENSION_OID + ".7"
_CONFIGURATION_FLAGS = {
    _CONFIGURATION + ".1": "dynamic_platform",
    _CONFIGURATION + ".2": "cached_keys",
    _CONFIGURATION + ".3": "smt_enabled",
}
COMPONENT_COUNT = 16
_COMPONENTS = tuple(f"{_TCB}.{index}" for index in range(1, COMPONENT_COUNT + 1))
#: Every member OID this parser reads, by its DER contents: a known member is recognised by
#: a dictionary lookup, and only an unknown one is decoded (and checked) as text. DER allows
#: one encoding per OID, so equal bytes are equal OIDs and vice versa.
_KNOWN_OIDS = {
    der.encode_oid(oid): oid
    for oid in (
        _PPID,
        _TCB,
        *_COMPONENTS,
        _PCESVN,
        _CPUSVN,
        _PCE_ID,
        _FMSPC,
        _SGX_TYPE,
        _PLATFORM_INSTANCE_ID,
        _CONFIGURATION,
        *_CONFIGURATION_FLAGS,
    )
}


@dataclass(frozen=True, slots=True)
class PckTcb:
    components: tuple[int, ...]
    """SGX TCB component SVNs 1..16 (the CPUSVN split as TCB Info compares it)."""
    pce_svn: int
    cpu_svn: bytes


@dataclass(frozen=True, slots=True)
class PckConfiguration:
    dynamic_platform: bool | None
    cached_keys: bool | None
    smt_enabled: bool | None


@dataclass(frozen=True, slots=True)
class PckExtensions:
    ppid: bytes
    tcb: PckTcb
    pce_id: bytes
    fmspc: bytes
    sgx_type: int
    platform_instance_id: bytes | None = None
    configuration: PckConfiguration | None = None


def pck_extensions(cert: x509.Certificate) -> PckExtensions:
    """The SGX extensions of ``cert``; ``MalformedEvidence`` when absent or malformed."""
    try:
        extension = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(SGX_EXTENSION_OID))
    except x509.ExtensionNotFound:
        raise MalformedEvidence(
            f"PCK certificate has no SGX extension {SGX_EXTENSION_OID}"
        ) from None
    except ValueError as exc:
        raise MalformedEvidence(f"PCK certificate extensions do not parse: {exc}") from None
    value = extension.value
    if not isinstance(value, x509.UnrecognizedExtension):
        raise MalformedEvidence("PCK SGX extension is not an opaque DER value")
    return parse_sgx_extensions(value.value)


def parse_sgx_extensions(data: bytes) -> PckExtensions:
    """Parse the DER value of the SGX extension."""
    members = _members(der.parse_one(data, der.TAG_SEQUENCE, "SGX extension"), "SGX extension")
    tcb_members = _members(
        der.expect(_required(members, _TCB), der.TAG_SEQUENCE, "SGX TCB"), "SGX TCB"
    )
    components = tuple(
        _unsigned(_required(tcb_members, oid), f"SGX TCB comp{index:02d}svn", 255)
        for index, oid in enumerate(_COMPONENTS, start=1)
    )
    tcb = PckTcb(
        components=components,
        pce_svn=_unsigned(_required(tcb_members, _PCESVN), "SGX TCB PCESVN", 0xFFFF),
        cpu_svn=_octets(_required(tcb_members, _CPUSVN), "SGX TCB CPUSVN", 16),
    )
    instance = members.get(_PLATFORM_INSTANCE_ID)
    configuration = members.get(_CONFIGURATION)
    return PckExtensions(
        ppid=_octets(_required(members, _PPID), "SGX PPID", 16),
        tcb=tcb,
        pce_id=_octets(_required(members, _PCE_ID), "SGX PCE-ID", 2),
        fmspc=_octets(_required(members, _FMSPC), "SGX FMSPC", 6),
        sgx_type=_enumerated(_required(members, _SGX_TYPE), "SGX Type"),
        platform_instance_id=(
            None if instance is None else _octets(instance, "SGX Platform Instance ID", 16)
        ),
        configuration=None if configuration is None else _configuration(configuration),
    )


def _members(value: bytes, what: str) -> dict[str, der.Tlv]:
    """(OID, value) pairs of a SEQUENCE of SEQUENCE, keyed by dotted OID."""
    found: dict[str, der.Tlv] = {}
    for raw, member in der.oid_pairs(value, what):
        oid = _KNOWN_OIDS.get(raw) or der.decode_oid(raw, what)
        if oid in found:
            raise MalformedEvidence(f"{what}: duplicate member {oid}")
        found[oid] = member
    return found


def _required(members: dict[str, der.Tlv], oid: str) -> der.Tlv:
    try:
        return members[oid]
    except KeyError:
        raise MalformedEvidence(f"PCK SGX extension lacks {oid}") from None


def _octets(tlv: der.Tlv, what: str, size: int) -> bytes:
    value = der.expect(tlv, der.TAG_OCTET_STRING, what)
    if len(value) != size:
        raise MalformedEvidence(f"{what} is {len(value)} bytes, expected {size}")
    return value


def _unsigned(tlv: der.Tlv, what: str, maximum: int) -> int:
    value = der.decode_unsigned(der.expect(tlv, der.TAG_INTEGER, what), what)
    if value > maximum:
        raise MalformedEvidence(f"{what} {value} > {maximum}")
    return value


def _enumerated(tlv: der.Tlv, what: str) -> int:
    return der.decode_unsigned(der.expect(tlv, der.TAG_ENUMERATED, what), what)


def _configuration(tlv: der.Tlv) -> PckConfiguration:
    what = "SGX Configuration"
    members = _members(der.expect(tlv, der.TAG_SEQUENCE, what), what)
    flags: dict[str, Any] = dict.fromkeys(_CONFIGURATION_FLAGS.values())
    for oid, name in _CONFIGURATION_FLAGS.items():
        if oid in members:
            flags[name] = der.decode_boolean(
                der.expect(members[oid], der.TAG_BOOLEAN, f"{what}.{name}"), f"{what}.{name}"
            )
    return PckConfiguration(**flags)
