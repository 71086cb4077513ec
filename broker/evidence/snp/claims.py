"""Normalised claims of a verified SEV-SNP report (:data:`CLAIMS`, listed in docs/claims.md).

Every field of the report a policy may read, snake_case, bytes as lowercase hex, TCB parts
as integers decoded with the product's TCB_VERSION layout (``fmc`` is null before Turin).
Field names and bit positions: AMD SEV-SNP Firmware ABI Specification, Table
"ATTESTATION_REPORT Structure" and the tables of its POLICY, PLATFORM_INFO and TCB_VERSION.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from types import MappingProxyType
from typing import Any

from broker.evidence.claims import (
    ClaimDefinition,
    Claims,
    Signer,
    SignerOrigin,
    Tee,
    boolean_claim,
    hex_claim,
    integer_claim,
    object_claim,
    string_claim,
    within,
)
from broker.evidence.snp.abi import AttestationReport, TcbVersion
from broker.evidence.snp.verify import VerifiedReport


def _tcb_claims(name: str, description: str) -> tuple[ClaimDefinition, ...]:
    return within(
        object_claim(name, description),
        integer_claim("bootloader", "SPL of the PSP bootloader"),
        integer_claim("tee", "SPL of the PSP operating system"),
        integer_claim("snp", "SPL of the SNP firmware"),
        integer_claim("microcode", "lowest microcode patch level of all cores"),
        integer_claim("fmc", "SPL of the FMC firmware; null before Turin", nullable=True),
    )


def _firmware_claims(name: str, description: str) -> tuple[ClaimDefinition, ...]:
    return within(
        object_claim(name, description),
        integer_claim("major", "major version"),
        integer_claim("minor", "minor version"),
        integer_claim("build", "build number"),
    )


#: Every claim :func:`report_fields` produces, in report order.
CLAIMS: tuple[ClaimDefinition, ...] = (
    integer_claim("version", "ATTESTATION_REPORT format version: 2, 3 or 5"),
    integer_claim("guest_svn", "the guest's security version number, from the ID block"),
    *within(
        object_claim("policy", "the guest policy, fixed at launch"),
        integer_claim("abi_minor", "minimum firmware ABI minor version the guest requires"),
        integer_claim("abi_major", "minimum firmware ABI major version the guest requires"),
        boolean_claim("smt", "SMT may be enabled on the host"),
        boolean_claim("migrate_ma", "a migration agent may be associated with the guest"),
        boolean_claim("debug", "debugging is allowed (= debug)"),
        boolean_claim("single_socket", "the guest may run on one socket only"),
        boolean_claim("cxl_allow", "CXL may be populated with devices or memory"),
        boolean_claim("mem_aes_256_xts", "AES-256-XTS memory encryption is required"),
        boolean_claim("rapl_dis", "running average power limit (RAPL) must be disabled"),
        boolean_claim("ciphertext_hiding", "ciphertext hiding must be enabled"),
        boolean_claim("page_swap_disable", "page swap commands are disabled for the guest"),
    ),
    hex_claim("family_id", 16, "family ID from the ID block, chosen by the image author"),
    hex_claim("image_id", 16, "image ID from the ID block, chosen by the image author"),
    integer_claim(
        "vmpl", "VMPL of the software that requested the report (0 is the most privileged)"
    ),
    integer_claim("signature_algo", "signature algorithm: 1, ECDSA P-384 with SHA-384"),
    *_tcb_claims("current_tcb", "the security patch levels (SPLs) the platform runs now"),
    *within(
        object_claim("platform_info", "the platform's state when it made the report"),
        boolean_claim("smt_enabled", "SMT is enabled"),
        boolean_claim("tsme_enabled", "transparent SME is enabled"),
        boolean_claim("ecc_enabled", "the platform uses error-correcting memory"),
        boolean_claim("rapl_disabled", "RAPL is disabled"),
        boolean_claim("ciphertext_hiding_enabled", "ciphertext hiding is enabled"),
        boolean_claim("alias_check_complete", "the memory alias (BadRAM) check ran (AMD-SB-3015)"),
        boolean_claim("tio_enabled", "SEV-TIO is enabled"),
    ),
    *within(
        object_claim("signer_info", "how the report was signed"),
        string_claim("signing_key", "the key that signed: vcek, vlek or none"),
        boolean_claim("mask_chip_key", "chip_id is masked (all zero)"),
        boolean_claim("author_key_en", "an author key signed the ID key"),
    ),
    hex_claim(
        "report_data", 64, "the 64 bytes the guest chose (keybroker binds its challenge here)"
    ),
    hex_claim("measurement", 48, "launch digest of the guest's initial memory: the image identity"),
    hex_claim("host_data", 32, "data the host supplied at launch"),
    hex_claim(
        "id_key_digest", 48, "SHA-384 of the key that signed the ID block (zero without one)"
    ),
    hex_claim(
        "author_key_digest", 48, "SHA-384 of the key that signed the ID key (zero without one)"
    ),
    hex_claim("report_id", 32, "the guest context's report ID"),
    hex_claim("report_id_ma", 32, "the report ID of the guest's migration agent (all ff: none)"),
    *_tcb_claims(
        "reported_tcb",
        "the SPLs the report is signed under, which the VCEK or VLEK endorses (minimum_tcb "
        "compares these)",
    ),
    *within(
        object_claim(
            "cpuid", "the CPU the report was made on; null before report v3", nullable=True
        ),
        integer_claim("family", "CPUID family (extended + base): 0x19 for Milan, Genoa and Turin"),
        integer_claim("model", "CPUID model (extended + base)"),
        integer_claim("stepping", "CPUID stepping"),
    ),
    hex_claim("chip_id", 64, "the chip's unique ID (zero when masked or signed by a VLEK)"),
    *_tcb_claims("committed_tcb", "the SPLs that rollback cannot go below"),
    *_firmware_claims("current_version", "the firmware version running now"),
    *_firmware_claims("committed_version", "the committed firmware version"),
    *_tcb_claims("launch_tcb", "the SPLs when the guest was launched"),
    integer_claim(
        "launch_mit_vector", "mitigation vector at launch (report v5); null before", nullable=True
    ),
    integer_claim(
        "current_mit_vector", "mitigation vector now (report v5); null before", nullable=True
    ),
)


def _flat(value: Any) -> Mapping[str, Any]:
    """A flat dataclass (policy, platform info, TCB parts, CPUID, version) as a read-only
    mapping of its fields (all scalars)."""
    return MappingProxyType({name: getattr(value, name) for name in _field_names(type(value))})


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(field.name for field in fields(cls))
    return names


def _tcb(tcb: TcbVersion, turin: bool) -> Mapping[str, Any]:
    return _flat(tcb.parts(turin))


def report_fields(report: AttestationReport, turin: bool) -> Mapping[str, Any]:
    """The claim fields of ``report``, already in the frozen form :class:`Claims` keeps
    (read-only mappings, bytes as lowercase hex), so that building claims costs no generic
    deep copy on the hot path; ``turin`` selects the TCB_VERSION layout."""
    signer_info = report.signer_info
    return MappingProxyType(
        {
            "version": report.version,
            "guest_svn": report.guest_svn,
            "policy": _flat(report.policy),
            "family_id": report.family_id.hex(),
            "image_id": report.image_id.hex(),
            "vmpl": report.vmpl,
            "signature_algo": report.signature_algo,
            "current_tcb": _tcb(report.current_tcb, turin),
            "reported_tcb": _tcb(report.reported_tcb, turin),
            "committed_tcb": _tcb(report.committed_tcb, turin),
            "launch_tcb": _tcb(report.launch_tcb, turin),
            "platform_info": _flat(report.platform_info),
            "signer_info": MappingProxyType(
                {
                    "signing_key": signer_info.signing_key.name.lower(),
                    "mask_chip_key": signer_info.mask_chip_key,
                    "author_key_en": signer_info.author_key_en,
                }
            ),
            "report_data": report.report_data.hex(),
            "measurement": report.measurement.hex(),
            "host_data": report.host_data.hex(),
            "id_key_digest": report.id_key_digest.hex(),
            "author_key_digest": report.author_key_digest.hex(),
            "report_id": report.report_id.hex(),
            "report_id_ma": report.report_id_ma.hex(),
            "chip_id": report.chip_id.hex(),
            "cpuid": None if report.cpuid is None else _flat(report.cpuid),
            "current_version": _flat(report.current_version),
            "committed_version": _flat(report.committed_version),
            "launch_mit_vector": report.launch_mit_vector,
            "current_mit_vector": report.current_mit_vector,
        }
    )


def report_claims(verified: VerifiedReport) -> Claims:
    report = verified.report
    return Claims(
        tee=Tee.SNP,
        signer=Signer(
            vendor="amd",
            origin=SignerOrigin.SILICON_VENDOR,
            root=verified.root.name,
            key=verified.key,
            product=verified.product.value,
        ),
        debug=report.policy.debug,
        fields=report_fields(report, verified.product.is_turin),
        report_data=report.report_data,
        warnings=verified.warnings,
    )
