"""Normalised claims of a verified SEV-SNP report (names as in docs/snp.md and CLAIMS.md).

Every field of the report a policy may read, snake_case, bytes as lowercase hex, TCB parts
as integers decoded with the product's TCB_VERSION layout (``fmc`` is null before Turin).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from types import MappingProxyType
from typing import Any

from broker.evidence.claims import Claims, Signer, SignerOrigin, Tee
from broker.evidence.snp.abi import AttestationReport, TcbVersion
from broker.evidence.snp.verify import VerifiedReport


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
