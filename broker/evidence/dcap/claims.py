"""Claims common to TDX and SGX: the signer, the quote version and the platform's TCB
appraisal (:data:`CLAIMS`, listed in docs/claims.md)."""

from __future__ import annotations

from typing import Any

from broker.evidence.claims import (
    INDEX,
    ClaimDefinition,
    Claims,
    Signer,
    SignerOrigin,
    Tee,
    boolean_claim,
    hex_claim,
    integer_claim,
    list_claim,
    string_claim,
    within,
)
from broker.evidence.dcap.collateral import TcbStatus
from broker.evidence.dcap.verify import VerifiedQuote
from broker.timeutil import iso

#: The claims :func:`intel_claims` adds to a TEE's own: ``quote_version`` and
#: :func:`platform_fields`.
CLAIMS: tuple[ClaimDefinition, ...] = (
    integer_claim("quote_version", "quote format version: 3, 4 or 5"),
    hex_claim("fmspc", 6, "Family-Model-Stepping-Platform-CustomSKU, from the PCK certificate"),
    hex_claim(
        "ppid",
        16,
        "the platform's Provisioning ID, from the PCK certificate: which machine signed (the "
        "instance the per-instance release limits count)",
    ),
    integer_claim("pce_svn", "the PCK certificate's PCESVN: the TCB the platform was certified at"),
    hex_claim(
        "cpu_svn",
        16,
        "the PCK certificate's CPUSVN, which the appraisal compares (not the SGX report's own)",
    ),
    string_claim(
        "tcb_status",
        "Intel's converged verdict on the platform (docs/tdx-sgx.md): "
        + ", ".join(status for status in TcbStatus if status is not TcbStatus.REVOKED),
    ),
    *within(
        list_claim(
            "advisory_ids", None, "Intel security advisories of the matched TCB levels, sorted"
        ),
        string_claim(INDEX, "one advisory ID, INTEL-SA-nnnnn"),
    ),
    string_claim("tcb_date", "the oldest matched tcbDate, YYYY-MM-DDTHH:MM:SSZ"),
    integer_claim(
        "tcb_evaluation_data_number",
        "the lower of the TCB Info's and the QE Identity's TCB evaluation data numbers",
    ),
)


def intel_signer(result: VerifiedQuote) -> Signer:
    return Signer(
        vendor="intel",
        origin=SignerOrigin.SILICON_VENDOR,
        root=result.root.name,
        key="pck",
    )


def platform_fields(result: VerifiedQuote) -> dict[str, Any]:
    """``fmspc``, ``ppid``, ``pce_svn``, ``cpu_svn`` (from the PCK certificate the TCB was appraised
    on) and the appraisal: ``tcb_status``, ``advisory_ids``, ``tcb_date``,
    ``tcb_evaluation_data_number``."""
    appraisal = result.appraisal
    return {
        "fmspc": result.pck.fmspc.hex(),
        "ppid": result.pck.ppid.hex(),
        "pce_svn": result.pck.tcb.pce_svn,
        "cpu_svn": result.pck.tcb.cpu_svn.hex(),
        "tcb_status": appraisal.status.value,
        "advisory_ids": list(appraisal.advisory_ids),
        "tcb_date": iso(appraisal.tcb_date, zulu=True),
        "tcb_evaluation_data_number": appraisal.tcb_evaluation_data_number,
    }


#: The bits of a flag set (TD_ATTRIBUTES, SECS.ATTRIBUTES): name, bit, and what the bit means.
FlagTable = tuple[tuple[str, int, str], ...]


def bit_positions(table: FlagTable) -> dict[str, int]:
    return {name: bit for name, bit, _ in table}


def flag_claims(table: FlagTable) -> tuple[ClaimDefinition, ...]:
    """One boolean claim per bit of ``table``, relative to the flag set's object claim."""
    return tuple(boolean_claim(name, f"bit {bit}, {meaning}") for name, bit, meaning in table)


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
