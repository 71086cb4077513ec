"""Verify a confidential VM behind a paravisor's vTPM (Azure SEV-SNP and TDX CVMs).

The guest cannot put a nonce into the hardware report: the paravisor (Microsoft's HCL, at
VMPL 0 or in the TD's L1) asks for the report with REPORT_DATA = H(runtime data), a JSON
that holds the vTPM's attestation key (AK), and the guest's freshness and boot
measurements come from a TPM2_Quote that AK signs. So the chain of trust is: silicon vendor
-> hardware report -> runtime data -> AK -> quote -> PCRs and extraData. In order (each
step raises):

1. read the evidence (keybroker's bundle or raw HCL report: :mod:`.bundle`; Trustee's JSON:
   :mod:`.trustee`) and, when there is an HCL report, its consistency (:func:`check_hcl`:
   sizes, hash type, report type, only zeros after it: ``malformed`` or ``unsupported``);
2. the hardware report with the existing verifier: SEV-SNP (signature, VCEK chain, TCB) or
   TDX (PCK chain, QE report, quote signature; its TCB appraisal comes last, step 6);
3. the hardware vouches for the runtime data (``runtime-data-mismatch``): SNP VMPL 0, since
   only the paravisor runs there and a report asked for at another VMPL would let the guest
   choose the runtime data, and so the AK; REPORT_DATA begins with H(runtime data) over the
   bytes exactly as given, H the HCL report's hash type (SHA-256 without one); for TDX the
   HCL report's TDREPORT and the quote carry the same REPORTDATA;
4. the AK is the runtime data's ``keys[kid=HCLAkPub]``; with it the quotes, the AK
   certificate when given, and the event log when given (:mod:`broker.evidence.tpm.verify`);
5. Trustee's v2 form promises that the runtime data's user-data is the quote's extraData
   zero-padded to 64 bytes: it must be (``runtime-data-mismatch``);
6. TDX only: the quote's TCB appraisal (collateral), after everything the evidence itself
   proves.

The claims are the hardware verifier's, plus ``tpm`` and ``vtpm``, with the signer's origin
``infrastructure-provider``: the PCRs and the nonce are vouched for by the provider's
paravisor, whose measurement (SNP ``measurement``, TDX ``mr_td``) the hardware report
carries, so a policy can require or refuse that.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import datetime
from types import MappingProxyType
from typing import Any

from broker.errors import MalformedEvidence, RuntimeDataMismatch, UnsupportedEvidence
from broker.evidence.claims import Claims, SignerOrigin, Tee, freeze
from broker.evidence.dcap.abi import TdReportBody10
from broker.evidence.dcap.verify import appraise_quote, authenticate_quote
from broker.evidence.snp.claims import report_claims
from broker.evidence.snp.verify import verify_report
from broker.evidence.tdx.claims import tdx_claims
from broker.evidence.tpm.claims import tpm_fields
from broker.evidence.tpm.evidence import load_json, with_collateral
from broker.evidence.tpm.verify import VerifiedTpm, verify_tpm
from broker.evidence.trust import TrustedRoot
from broker.evidence.vtpm import bundle, trustee
from broker.evidence.vtpm.claims import vtpm_fields
from broker.evidence.vtpm.evidence import VtpmEvidence
from broker.evidence.vtpm.hcl import (
    HASH_TYPES,
    REPORT_TYPE_SNP,
    REPORT_TYPE_TDX,
    REPORT_TYPES,
    REQUEST_DATA_SIZE,
    VARIABLE_DATA_OFFSET,
    HclReport,
)
from broker.evidence.vtpm.runtime import RuntimeData, parse_runtime_data

#: The VMPL of Azure's paravisor, the only one whose reports vouch for the runtime data.
PARAVISOR_VMPL = 0
_REPORT_TYPE = {Tee.SNP_VTPM: REPORT_TYPE_SNP, Tee.TDX_VTPM: REPORT_TYPE_TDX}
_DEFAULT_HASH = "sha256"


def read_evidence(tee: Tee, data: bytes, collateral: Mapping[str, bytes]) -> VtpmEvidence:
    """The evidence in whichever form it came (detected from its bytes), completed by the
    collateral that may carry its parts."""
    if bundle.is_hcl_report(data):
        evidence = bundle.from_hcl_report(tee, data, collateral)
    else:
        document = load_json(data, f"{tee.value} evidence")
        if trustee.is_trustee(document):
            evidence = trustee.parse_trustee(document, tee)
        else:
            evidence = bundle.from_bundle(tee, document)
    tpm = with_collateral(evidence.tpm, collateral)
    return evidence if tpm is evidence.tpm else dataclasses.replace(evidence, tpm=tpm)


def check_hcl(hcl: HclReport, tee: Tee) -> None:
    """The HCL report's own consistency (step 1)."""
    size = len(hcl.variable_data)
    if hcl.report_size != VARIABLE_DATA_OFFSET + size:
        raise MalformedEvidence(
            f"HCL report: report_size {hcl.report_size} != {VARIABLE_DATA_OFFSET + size} "
            f"(header, hardware report, request data and {size} bytes of variable data)"
        )
    if hcl.data_size != REQUEST_DATA_SIZE + size:
        raise MalformedEvidence(
            f"HCL report: IGVM_REQUEST_DATA.data_size {hcl.data_size} != {REQUEST_DATA_SIZE + size}"
        )
    if any(hcl.trailing):
        raise MalformedEvidence(
            f"HCL report: {len(hcl.trailing)} bytes after report_size are not all zero; only "
            "the NV index's zero padding may follow the report"
        )
    wanted = _REPORT_TYPE[tee]
    if hcl.report_type != wanted:
        found = REPORT_TYPES.get(hcl.report_type, "unknown")
        raise UnsupportedEvidence(
            f"HCL report: IGVM_REQUEST_DATA.report_type {hcl.report_type} ({found}) != "
            f"{wanted} ({REPORT_TYPES[wanted]}) for tee {tee.value}"
        )
    if hcl.hash_type not in HASH_TYPES:
        raise UnsupportedEvidence(
            f"HCL report: IGVM_REQUEST_DATA.report_data_hash_type {hcl.hash_type} is not 1 "
            "(SHA-256), 2 (SHA-384) or 3 (SHA-512)"
        )


def check_runtime_data(evidence: VtpmEvidence, report_data: bytes, field: str) -> None:
    """REPORT_DATA begins with H(runtime data) (step 3)."""
    name = _DEFAULT_HASH if evidence.hcl is None else HASH_TYPES[evidence.hcl.hash_type][0]
    digest = hashlib.new(name, evidence.runtime_data).digest()
    found = report_data[: len(digest)]
    if not hmac.compare_digest(found, digest):
        raise RuntimeDataMismatch(
            f"{field}[0:{len(digest)}] {found.hex()} != {name} of the runtime data "
            f"{digest.hex()}: the hardware report does not vouch for this runtime data"
        )


def check_user_data(evidence: VtpmEvidence, runtime: RuntimeData, verified: VerifiedTpm) -> None:
    """Step 5."""
    if not evidence.user_data_bound:
        return
    extra = verified.quotes.attest.extra_data
    user_data = runtime.user_data()
    wanted = extra.ljust(64, b"\0")
    if user_data is None or not hmac.compare_digest(user_data, wanted):
        found = "absent" if user_data is None else user_data.hex()
        raise RuntimeDataMismatch(
            f"runtime data user-data {found} != the quote's extraData {extra.hex()} zero-padded "
            f"to 64 bytes, as {evidence.form} evidence promises"
        )


def verify_tpm_part(
    evidence: VtpmEvidence,
    runtime: RuntimeData,
    *,
    now: datetime,
    extra_roots: Sequence[TrustedRoot],
) -> VerifiedTpm:
    """Steps 4 and 5."""
    tpm = evidence.tpm
    ak, fingerprint = runtime.ak_and_fingerprint()
    verified = verify_tpm(
        tpm.quotes,
        ak,
        ak_cert=tpm.ak_cert,
        ak_chain=tpm.ak_chain,
        event_log=tpm.event_log,
        now=now,
        extra_roots=extra_roots,
        ak_fingerprint=fingerprint,
    )
    check_user_data(evidence, runtime, verified)
    return verified


def verify_snp_vtpm(
    evidence: bytes,
    collateral: Mapping[str, bytes],
    *,
    now: datetime,
    extra_roots: Sequence[TrustedRoot] = (),
) -> Claims:
    parsed = read_evidence(Tee.SNP_VTPM, evidence, collateral)
    if parsed.hcl is not None:
        check_hcl(parsed.hcl, Tee.SNP_VTPM)
    # The request's own collateral wins over what the form carries, as over the store's.
    report = verify_report(
        parsed.hardware, {**parsed.collateral, **collateral}, now=now, extra_roots=extra_roots
    )
    if report.report.vmpl != PARAVISOR_VMPL:
        raise RuntimeDataMismatch(
            f"ATTESTATION_REPORT.VMPL {report.report.vmpl} != {PARAVISOR_VMPL}: only the "
            "paravisor's report (VMPL 0) vouches for the runtime data"
        )
    check_runtime_data(parsed, report.report.report_data, "REPORT_DATA")
    runtime = parse_runtime_data(parsed.runtime_data)
    tpm = verify_tpm_part(parsed, runtime, now=now, extra_roots=extra_roots)
    return _compose(Tee.SNP_VTPM, report_claims(report), tpm, runtime)


def verify_tdx_vtpm(
    evidence: bytes,
    collateral: Mapping[str, bytes],
    *,
    now: datetime,
    extra_roots: Sequence[TrustedRoot] = (),
) -> Claims:
    parsed = read_evidence(Tee.TDX_VTPM, evidence, collateral)
    if parsed.hcl is not None:
        check_hcl(parsed.hcl, Tee.TDX_VTPM)
    authenticated = authenticate_quote(
        parsed.hardware, collateral, now=now, tee=Tee.TDX, extra_roots=extra_roots
    )
    body = authenticated.quote.body
    if not isinstance(body, TdReportBody10):  # authenticate_quote checked the TEE
        raise TypeError("TDX quote without a TD report body")
    if parsed.hcl is not None and not hmac.compare_digest(
        parsed.hcl.td_report_data(), body.report_data
    ):
        raise RuntimeDataMismatch(
            f"HCL report TDREPORT REPORTDATA {parsed.hcl.td_report_data().hex()} != TD quote "
            f"REPORTDATA {body.report_data.hex()}: the HCL report and the quote answer "
            "different requests"
        )
    check_runtime_data(parsed, body.report_data, "REPORTDATA")
    runtime = parse_runtime_data(parsed.runtime_data)
    tpm = verify_tpm_part(parsed, runtime, now=now, extra_roots=extra_roots)
    result = appraise_quote(
        authenticated,
        collateral,
        now=now,
        also_verified=("runtime data and vTPM quote (docs/vtpm.md)",),
    )
    return _compose(Tee.TDX_VTPM, tdx_claims(result, None), tpm, runtime)


def _compose(tee: Tee, hardware: Claims, tpm: VerifiedTpm, runtime: RuntimeData) -> Claims:
    # The hardware's fields are frozen already: only the new ones are (Claims keeps a
    # read-only mapping as given, so nothing is copied twice on this hot path).
    fields: dict[str, Any] = {
        name: value for name, value in hardware.fields.items() if name != "event_log"
    }
    fields["tpm"] = freeze(tpm_fields(tpm))
    fields["vtpm"] = freeze(vtpm_fields(tpm, runtime))
    return Claims(
        tee=tee,
        signer=dataclasses.replace(hardware.signer, origin=SignerOrigin.INFRASTRUCTURE_PROVIDER),
        debug=hardware.debug,
        fields=MappingProxyType(fields),
        collateral_time=hardware.collateral_time,
        warnings=hardware.warnings,
    )
