"""Trustee's SNP evidence JSON (``SnpEvidence``) <-> the raw report and its collateral.

A Confidential Containers guest (guest-components' SNP attester) sends, as the KBS
``primary_evidence``, ``{"attestation_report": <report>, "cert_chain": [<entry>...] | null}``:

* ``attestation_report`` is virtee/sev 6.3's ``AttestationReport`` as serde writes it: one
  member per report field (``version guest_svn policy family_id image_id vmpl sig_algo
  current_tcb plat_info key_info report_data measurement host_data id_key_digest
  author_key_digest report_id report_id_ma reported_tcb cpuid_fam_id cpuid_mod_id cpuid_step
  chip_id committed_tcb current committed launch_tcb launch_mit_vector current_mit_vector
  signature``), byte arrays as lists of integers, ``policy``/``plat_info``/``key_info`` as
  integers, each TCB_VERSION as ``{"fmc", "bootloader", "tee", "snp", "microcode"}`` (``fmc``
  null except on Turin), firmware versions as ``{"major", "minor", "build"}``, the CPUID
  members null before report v3 and the mitigation vectors null (or, from older sev
  releases, absent) before v5, and ``signature`` as ``{"r": [72], "s": [72]}``, the raw
  little-endian halves;
* ``cert_chain`` is the extended-report certificate table the host supplied: entries
  ``{"cert_type": "VCEK" | "VLEK" | "ASK" | "ARK" | "CRL" | "Empty" | {"OTHER": <guid>},
  "data": [DER bytes as integers]}``.

This module only translates (ARCHITECTURE §8: parse, never judge). The report is rebuilt
into its ABI bytes with :meth:`AttestationReport.to_bytes` and parsed back with
:func:`parse_report`, so every ABI check applies; the certificates become the collateral the
native verifier reads (``vcek``, ``vlek``, ``cert_chain`` as PEM, ``crl``). Trust is not
decided here: a chain's ARK must still be a pinned AMD root byte for byte
(``verify._issuer``), whatever ``cert_chain`` carries.

One loss is inherent in the serde form: it names only the defined parts of a TCB_VERSION, so
reserved TCB bytes come back as zero. A report whose reserved TCB bytes were not zero cannot
be rebuilt and fails its signature check, as it would in any verifier reading this form.

:meth:`SnpEvidence.to_json` is the exact inverse of :func:`parse` (tests prove the round
trip on real reports).
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from broker.errors import MalformedEvidence, UnsupportedEvidence
from broker.evidence.snp.abi import (
    BYTE_FIELD_SIZES,
    ECDSA_COMPONENT_SIZE,
    SIG_ALGO_ECDSA_P384_SHA384,
    SUPPORTED_VERSIONS,
    AttestationReport,
    Cpuid,
    EcdsaSignature,
    FirmwareVersion,
    GuestPolicy,
    PlatformInfo,
    SignerInfo,
    TcbParts,
    TcbVersion,
    parse_report,
)
from broker.evidence.snp.products import product_from_cpuid

#: The members of virtee/sev 6.3's serde ``AttestationReport``, in its order.
REPORT_MEMBERS = (
    "version",
    "guest_svn",
    "policy",
    "family_id",
    "image_id",
    "vmpl",
    "sig_algo",
    "current_tcb",
    "plat_info",
    "key_info",
    "report_data",
    "measurement",
    "host_data",
    "id_key_digest",
    "author_key_digest",
    "report_id",
    "report_id_ma",
    "reported_tcb",
    "cpuid_fam_id",
    "cpuid_mod_id",
    "cpuid_step",
    "chip_id",
    "committed_tcb",
    "current",
    "committed",
    "launch_tcb",
    "launch_mit_vector",
    "current_mit_vector",
    "signature",
)
#: Older sev releases (before the v5 report fields) omit these two; both absent reads as null.
OPTIONAL_MEMBERS = frozenset({"launch_mit_vector", "current_mit_vector"})
_TCB_MEMBERS = ("current_tcb", "reported_tcb", "committed_tcb", "launch_tcb")
_TCB_PARTS = ("fmc", "bootloader", "tee", "snp", "microcode")
_VERSION_PARTS = ("major", "minor", "build")
_CPUID_MEMBERS = ("cpuid_fam_id", "cpuid_mod_id", "cpuid_step")

#: sev's ``CertType`` unit variants; ``{"OTHER": "<guid>"}`` is the one variant with a value.
CERT_TYPES = ("Empty", "ARK", "ASK", "VCEK", "VLEK", "CRL")
_ENDORSEMENT = {"VCEK": "vcek", "VLEK": "vlek"}
_CHAIN_ORDER = ("ASK", "ARK")  # what the native ``cert_chain`` collateral carries, issuer last
_U8, _U32, _U64 = (1 << 8) - 1, (1 << 32) - 1, (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class CertTableEntry:
    """One entry of the extended report's certificate table."""

    cert_type: str
    """One of :data:`CERT_TYPES`, or the GUID of an ``OTHER`` entry (lower case)."""
    data: bytes
    other: bool = False
    """True for ``{"OTHER": guid}``: ``cert_type`` is then that GUID."""

    def to_json(self) -> dict[str, Any]:
        cert_type: Any = {"OTHER": self.cert_type} if self.other else self.cert_type
        return {"cert_type": cert_type, "data": list(self.data)}


@dataclass(frozen=True, slots=True)
class SnpEvidence:
    """Trustee's ``SnpEvidence``: the report (ABI form) and the host's certificate table."""

    report: AttestationReport
    cert_chain: tuple[CertTableEntry, ...] | None
    turin: bool
    """Whether the TCB_VERSIONs use Turin's layout (serde: ``fmc`` is not null)."""

    @property
    def report_bytes(self) -> bytes:
        return self.report.to_bytes()

    def collateral(self) -> dict[str, bytes]:
        """The native verifier's collateral: ``vcek``/``vlek`` (DER), ``cert_chain`` (the
        ASK and ARK as PEM, as AMD KDS serves them), ``crl`` (DER). ``Empty`` and ``OTHER``
        entries carry nothing the verifier reads."""
        found: dict[str, bytes] = {}
        chain: dict[str, bytes] = {}
        for entry in self.cert_chain or ():
            if entry.other or entry.cert_type == "Empty":
                continue
            if entry.cert_type in _ENDORSEMENT:
                found[_ENDORSEMENT[entry.cert_type]] = entry.data
            elif entry.cert_type == "CRL":
                found["crl"] = entry.data
            else:
                chain[entry.cert_type] = _pem(entry.cert_type, entry.data)
        if chain:
            found["cert_chain"] = b"".join(chain[name] for name in _CHAIN_ORDER if name in chain)
        return found

    def to_json(self) -> dict[str, Any]:
        """The serde form :func:`parse` reads (its exact inverse)."""
        report = self.report
        document: dict[str, Any] = {
            "version": report.version,
            "guest_svn": report.guest_svn,
            "policy": report.policy.to_int(),
            "family_id": list(report.family_id),
            "image_id": list(report.image_id),
            "vmpl": report.vmpl,
            "sig_algo": report.signature_algo,
            "current_tcb": _tcb_json(report.current_tcb, self.turin),
            "plat_info": report.platform_info.to_int(),
            "key_info": report.signer_info.to_int(),
            "report_data": list(report.report_data),
            "measurement": list(report.measurement),
            "host_data": list(report.host_data),
            "id_key_digest": list(report.id_key_digest),
            "author_key_digest": list(report.author_key_digest),
            "report_id": list(report.report_id),
            "report_id_ma": list(report.report_id_ma),
            "reported_tcb": _tcb_json(report.reported_tcb, self.turin),
            "cpuid_fam_id": None if report.cpuid is None else report.cpuid.family,
            "cpuid_mod_id": None if report.cpuid is None else report.cpuid.model,
            "cpuid_step": None if report.cpuid is None else report.cpuid.stepping,
            "chip_id": list(report.chip_id),
            "committed_tcb": _tcb_json(report.committed_tcb, self.turin),
            "current": _version_json(report.current_version),
            "committed": _version_json(report.committed_version),
            "launch_tcb": _tcb_json(report.launch_tcb, self.turin),
            "launch_mit_vector": report.launch_mit_vector,
            "current_mit_vector": report.current_mit_vector,
            "signature": {
                "r": list(report.signature.r.to_bytes(ECDSA_COMPONENT_SIZE, "little")),
                "s": list(report.signature.s.to_bytes(ECDSA_COMPONENT_SIZE, "little")),
            },
        }
        chain = None if self.cert_chain is None else [e.to_json() for e in self.cert_chain]
        return {"attestation_report": document, "cert_chain": chain}


def from_report(
    raw: bytes, cert_chain: tuple[CertTableEntry, ...] | None, *, turin: bool | None = None
) -> SnpEvidence:
    """The Trustee form of a raw report. The TCB layout follows the report's CPUID (v3+);
    a v2 report carries none, so ``turin`` must then be given."""
    report = parse_report(raw)
    if report.cpuid is not None:
        from_cpuid = product_from_cpuid(report.cpuid).is_turin
        if turin is not None and turin != from_cpuid:
            raise ValueError(f"turin={turin} contradicts the report's CPUID")
        turin = from_cpuid
    if turin is None:
        raise ValueError("a v2 report names no product: say whether it is Turin")
    evidence = SnpEvidence(report, cert_chain, turin)
    if parse(evidence.to_json()).report_bytes != raw:
        raise ValueError("the report has reserved TCB bytes set, which the serde form drops")
    return evidence


def parse(document: Any) -> SnpEvidence:
    """Read Trustee's ``SnpEvidence`` JSON value; ``MalformedEvidence`` when it is not one
    (or when the report it describes has no ABI encoding)."""
    top = _object(document, "SnpEvidence", {"attestation_report", "cert_chain"}, set())
    report_json = _object(
        top["attestation_report"],
        "attestation_report",
        set(REPORT_MEMBERS) - OPTIONAL_MEMBERS,
        OPTIONAL_MEMBERS,
    )
    turin, report = _report(report_json)
    # What the ABI parser refuses as unsupported rather than malformed, refused alike here
    # (``to_bytes`` cannot encode either).
    if report.version not in SUPPORTED_VERSIONS:
        known = ", ".join(map(str, SUPPORTED_VERSIONS))
        raise UnsupportedEvidence(
            f"attestation_report.version {report.version} is not one of {known}"
        )
    if report.signature_algo != SIG_ALGO_ECDSA_P384_SHA384:
        raise UnsupportedEvidence(
            f"attestation_report.sig_algo {report.signature_algo} is not 1 "
            "(ECDSA P-384 with SHA-384)"
        )
    try:
        raw = report.to_bytes()
    except ValueError as exc:
        raise MalformedEvidence(f"attestation_report: {exc}") from None
    parsed = parse_report(raw)  # every ABI check (version, reserved bits) applies
    return SnpEvidence(parsed, _cert_chain(top["cert_chain"]), turin)


# --- reading ----------------------------------------------------------------------------------


def _object(
    value: Any, what: str, required: AbstractSet[str], optional: AbstractSet[str]
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedEvidence(f"{what} must be a JSON object")
    missing = sorted(required - value.keys())
    if missing:
        raise MalformedEvidence(f"{what} lacks {', '.join(missing)}")
    unknown = sorted(value.keys() - required - optional)
    if unknown:
        raise MalformedEvidence(f"{what} has unknown members {', '.join(unknown)}")
    return value


def _integer(value: Any, what: str, maximum: int) -> int:
    # bool is an int in Python, never in JSON's sense here.
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
        raise MalformedEvidence(f"{what} must be an integer in 0..{maximum}")
    return value


def _bytes(value: Any, what: str, size: int | None = None) -> bytes:
    if not isinstance(value, list):
        raise MalformedEvidence(f"{what} must be a list of byte values")
    if size is not None and len(value) != size:
        raise MalformedEvidence(f"{what} has {len(value)} bytes, not {size}")
    return bytes(_integer(item, f"{what}[{index}]", _U8) for index, item in enumerate(value))


def _tcb(value: Any, what: str) -> tuple[bool, TcbVersion]:
    parts = _object(value, what, set(_TCB_PARTS), set())
    fmc = parts["fmc"]
    turin = fmc is not None
    named = TcbParts(
        bootloader=_integer(parts["bootloader"], f"{what}.bootloader", _U8),
        tee=_integer(parts["tee"], f"{what}.tee", _U8),
        snp=_integer(parts["snp"], f"{what}.snp", _U8),
        microcode=_integer(parts["microcode"], f"{what}.microcode", _U8),
        fmc=None if fmc is None else _integer(fmc, f"{what}.fmc", _U8),
    )
    return turin, TcbVersion.compose(named, turin)


def _version(value: Any, what: str) -> FirmwareVersion:
    parts = _object(value, what, set(_VERSION_PARTS), set())
    return FirmwareVersion(
        major=_integer(parts["major"], f"{what}.major", _U8),
        minor=_integer(parts["minor"], f"{what}.minor", _U8),
        build=_integer(parts["build"], f"{what}.build", _U8),
    )


def _optional(value: Any, what: str, maximum: int) -> int | None:
    return None if value is None else _integer(value, what, maximum)


def _report(doc: dict[str, Any]) -> tuple[bool, AttestationReport]:
    tcbs = {name: _tcb(doc[name], name) for name in _TCB_MEMBERS}
    layouts = {turin for turin, _ in tcbs.values()}
    if len(layouts) != 1:
        raise MalformedEvidence("TCB versions disagree on fmc: null in some, set in others")
    turin = layouts.pop()
    cpuid_values = [_optional(doc[name], name, _U8) for name in _CPUID_MEMBERS]
    cpuid = None
    if any(value is not None for value in cpuid_values):
        family, model, stepping = cpuid_values
        if family is None or model is None or stepping is None:
            raise MalformedEvidence("cpuid_fam_id, cpuid_mod_id and cpuid_step: all or none")
        cpuid = Cpuid(family, model, stepping)
        if product_from_cpuid(cpuid).is_turin != turin:
            raise MalformedEvidence(
                f"fmc is {'set' if turin else 'null'} but CPUID {family:#04x}/{model:#04x} "
                f"is {'not ' if turin else ''}Turin"
            )
    signature = _object(doc["signature"], "signature", {"r", "s"}, set())
    try:
        policy = GuestPolicy.from_int(_integer(doc["policy"], "policy", _U64))
        platform_info = PlatformInfo.from_int(_integer(doc["plat_info"], "plat_info", _U64))
        signer_info = SignerInfo.from_int(_integer(doc["key_info"], "key_info", _U32))
    except MalformedEvidence as exc:
        raise MalformedEvidence(f"attestation_report: {exc.detail}") from None
    byte_fields = {name: _bytes(doc[name], name, size) for name, size in BYTE_FIELD_SIZES.items()}
    report = AttestationReport(
        version=_integer(doc["version"], "version", _U32),
        guest_svn=_integer(doc["guest_svn"], "guest_svn", _U32),
        policy=policy,
        family_id=byte_fields["family_id"],
        image_id=byte_fields["image_id"],
        vmpl=_integer(doc["vmpl"], "vmpl", _U32),
        signature_algo=_integer(doc["sig_algo"], "sig_algo", _U32),
        current_tcb=tcbs["current_tcb"][1],
        platform_info=platform_info,
        signer_info=signer_info,
        report_data=byte_fields["report_data"],
        measurement=byte_fields["measurement"],
        host_data=byte_fields["host_data"],
        id_key_digest=byte_fields["id_key_digest"],
        author_key_digest=byte_fields["author_key_digest"],
        report_id=byte_fields["report_id"],
        report_id_ma=byte_fields["report_id_ma"],
        reported_tcb=tcbs["reported_tcb"][1],
        cpuid=cpuid,
        chip_id=byte_fields["chip_id"],
        committed_tcb=tcbs["committed_tcb"][1],
        current_version=_version(doc["current"], "current"),
        committed_version=_version(doc["committed"], "committed"),
        launch_tcb=tcbs["launch_tcb"][1],
        launch_mit_vector=_optional(doc.get("launch_mit_vector"), "launch_mit_vector", _U64),
        current_mit_vector=_optional(doc.get("current_mit_vector"), "current_mit_vector", _U64),
        signature=EcdsaSignature(
            r=int.from_bytes(_bytes(signature["r"], "signature.r", ECDSA_COMPONENT_SIZE), "little"),
            s=int.from_bytes(_bytes(signature["s"], "signature.s", ECDSA_COMPONENT_SIZE), "little"),
        ),
    )
    return turin, report


def _cert_chain(value: Any) -> tuple[CertTableEntry, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise MalformedEvidence("cert_chain must be a list or null")
    entries = []
    seen: set[str] = set()
    for index, item in enumerate(value):
        what = f"cert_chain[{index}]"
        entry = _object(item, what, {"cert_type", "data"}, set())
        cert_type, other = _cert_type(entry["cert_type"], what)
        if not other and cert_type != "Empty":
            if cert_type in seen:  # which one would the verifier use? Refuse to guess.
                raise MalformedEvidence(f"cert_chain names {cert_type} twice")
            seen.add(cert_type)
        entries.append(CertTableEntry(cert_type, _bytes(entry["data"], f"{what}.data"), other))
    return tuple(entries)


def _cert_type(value: Any, what: str) -> tuple[str, bool]:
    if isinstance(value, str) and value in CERT_TYPES:
        return value, False
    if isinstance(value, dict) and value.keys() == {"OTHER"} and isinstance(value["OTHER"], str):
        return value["OTHER"].lower(), True
    raise MalformedEvidence(
        f'{what}.cert_type must be one of {", ".join(CERT_TYPES)} or {{"OTHER": guid}}'
    )


def _pem(cert_type: str, der: bytes) -> bytes:
    try:
        return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM)
    except ValueError:
        raise MalformedEvidence(f"cert_chain {cert_type} is not a DER certificate") from None


def _tcb_json(tcb: TcbVersion, turin: bool) -> dict[str, Any]:
    parts = tcb.parts(turin)
    return {
        "fmc": parts.fmc,
        "bootloader": parts.bootloader,
        "tee": parts.tee,
        "snp": parts.snp,
        "microcode": parts.microcode,
    }


def _version_json(version: FirmwareVersion) -> dict[str, int]:
    return {"major": version.major, "minor": version.minor, "build": version.build}
