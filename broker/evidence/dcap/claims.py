"""Claims common to TDX and SGX: the signer and the platform's TCB appraisal."""

from __future__ import annotations

from typing import Any

from broker.evidence.claims import Claims, Signer, SignerOrigin, Tee
from broker.evidence.dcap.verify import VerifiedQuote


def intel_signer(result: VerifiedQuote) -> Signer:
    return Signer(
        vendor="intel",
        origin=SignerOrigin.SILICON_VENDOR,
        root=result.root.name,
        key="pck",
    )


def platform_fields(result: VerifiedQuote) -> dict[str, Any]:
    """``fmspc``, ``pce_svn``, ``cpu_svn`` (from the PCK certificate the TCB was appraised
    on) and the appraisal: ``tcb_status``, ``advisory_ids``, ``tcb_date``,
    ``tcb_evaluation_data_number``."""
    appraisal = result.appraisal
    return {
        "fmspc": result.pck.fmspc.hex(),
        "pce_svn": result.pck.tcb.pce_svn,
        "cpu_svn": result.pck.tcb.cpu_svn.hex(),
        "tcb_status": appraisal.status.value,
        "advisory_ids": list(appraisal.advisory_ids),
        "tcb_date": appraisal.tcb_date.isoformat().replace("+00:00", "Z"),
        "tcb_evaluation_data_number": appraisal.tcb_evaluation_data_number,
    }


def flags(value: int, bits: dict[str, int]) -> dict[str, bool]:
    return {name: bool(value >> bit & 1) for name, bit in bits.items()}


def intel_claims(
    tee: Tee,
    result: VerifiedQuote,
    fields: dict[str, Any],
    *,
    debug: bool,
    report_data: bytes,
) -> Claims:
    """The Claims of a verified quote: the TEE's own fields plus the platform fields."""
    return Claims(
        tee=tee,
        signer=intel_signer(result),
        debug=debug,
        fields={
            "quote_version": result.quote.header.version,
            **fields,
            **platform_fields(result),
        },
        report_data=report_data,
        collateral_time=result.collateral_time,
        warnings=result.warnings,
    )
