"""Normalised claims of a verified SEV-SNP report (names as in docs/snp.md and CLAIMS.md).

Every field of the report a policy may read, snake_case, bytes as lowercase hex, TCB parts
as integers decoded with the product's TCB_VERSION layout (``fmc`` is null before Turin).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from broker.evidence.claims import Claims, Signer, SignerOrigin, Tee
from broker.evidence.snp.abi import AttestationReport, TcbVersion
from broker.evidence.snp.verify import VerifiedReport


def _flat(value: Any) -> dict[str, Any]:
    """A flat dataclass (policy, platform info, CPUID, version) as a dict of its fields."""
    return {field.name: getattr(value, field.name) for field in fields(value)}


def _tcb(tcb: TcbVersion, turin: bool) -> dict[str, Any]:
    return _flat(tcb.parts(turin))


def report_fields(report: AttestationReport, turin: bool) -> dict[str, Any]:
    """The claim fields of ``report``; ``turin`` selects the TCB_VERSION layout."""
    signer_info = report.signer_info
    return {
        "version": report.version,
        "guest_svn": report.guest_svn,
        "policy": _flat(report.policy),
        "family_id": report.family_id,
        "image_id": report.image_id,
        "vmpl": report.vmpl,
        "signature_algo": report.signature_algo,
        "current_tcb": _tcb(report.current_tcb, turin),
        "reported_tcb": _tcb(report.reported_tcb, turin),
        "committed_tcb": _tcb(report.committed_tcb, turin),
        "launch_tcb": _tcb(report.launch_tcb, turin),
        "platform_info": _flat(report.platform_info),
        "signer_info": {
            "signing_key": signer_info.signing_key.name.lower(),
            "mask_chip_key": signer_info.mask_chip_key,
            "author_key_en": signer_info.author_key_en,
        },
        "report_data": report.report_data,
        "measurement": report.measurement,
        "host_data": report.host_data,
        "id_key_digest": report.id_key_digest,
        "author_key_digest": report.author_key_digest,
        "report_id": report.report_id,
        "report_id_ma": report.report_id_ma,
        "chip_id": report.chip_id,
        "cpuid": None if report.cpuid is None else _flat(report.cpuid),
        "current_version": _flat(report.current_version),
        "committed_version": _flat(report.committed_version),
        "launch_mit_vector": report.launch_mit_vector,
        "current_mit_vector": report.current_mit_vector,
    }


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
