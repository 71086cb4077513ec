"""keybroker's own forms of paravisor-vTPM evidence (docs/vtpm.md):

* **the bundle**, a JSON object, binary members in standard base64:
  ``{"snp_report" | "td_quote" | "hcl_report", "runtime_data", "tpm_quote": {"message",
  "signature", "pcrs": {"sha256": {"0": hex, ...}}}, "ak_cert"?, "ak_chain"?: [...],
  "event_log"?}``. For ``snp-vtpm`` either ``hcl_report`` (which holds the report and the
  runtime data) or ``snp_report`` with ``runtime_data``; for ``tdx-vtpm``, ``td_quote`` with
  either ``hcl_report`` or ``runtime_data``. A piece given twice is refused.
* **the raw HCL report** (as read from NV index 0x01400001), whose TPM quote then comes as
  collateral ``tpm_quote`` (the ``tpm_quote`` JSON object above, or Trustee's) and, for
  ``tdx-vtpm``, its TD quote as collateral ``td_quote``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from broker.errors import MalformedEvidence
from broker.evidence.claims import Tee
from broker.evidence.tpm.evidence import (
    TpmEvidence,
    b64_list,
    b64_member,
    load_json,
    only_members,
    quote_from_json,
)
from broker.evidence.tpm.quote import Quote
from broker.evidence.vtpm.evidence import VtpmEvidence
from broker.evidence.vtpm.hcl import SIGNATURE, parse_hcl_report
from broker.evidence.vtpm.trustee import is_trustee_quote, trustee_quote

BUNDLE_MEMBERS = frozenset(
    {
        "snp_report",
        "td_quote",
        "hcl_report",
        "runtime_data",
        "tpm_quote",
        "ak_cert",
        "ak_chain",
        "event_log",
    }
)
#: The member of the bundle that holds each tee's hardware report besides the HCL report.
HARDWARE_MEMBER = {Tee.SNP_VTPM: "snp_report", Tee.TDX_VTPM: "td_quote"}


def is_hcl_report(data: bytes) -> bool:
    return data[:4] == SIGNATURE


def from_hcl_report(tee: Tee, data: bytes, collateral: Mapping[str, bytes]) -> VtpmEvidence:
    """The raw HCL report, its TPM quote (and TD quote) as collateral."""
    hcl = parse_hcl_report(data)
    quote_json = collateral.get("tpm_quote")
    if quote_json is None:
        raise MalformedEvidence(
            "a raw HCL report needs its TPM quote as collateral tpm_quote (docs/vtpm.md)"
        )
    hardware = hcl.snp_report()
    if tee is Tee.TDX_VTPM:
        td_quote = collateral.get("td_quote")
        if td_quote is None:
            raise MalformedEvidence(
                "a raw HCL report of a TD needs its TD quote as collateral td_quote"
            )
        hardware = td_quote
    return VtpmEvidence(
        tee=tee,
        hardware=hardware,
        runtime_data=hcl.variable_data,
        tpm=TpmEvidence(quotes=(quote_from_collateral(quote_json),)),
        hcl=hcl,
        form="hcl",
    )


def quote_from_collateral(data: bytes) -> Quote:
    """Collateral ``tpm_quote``: keybroker's ``tpm_quote`` object or Trustee's."""
    document = load_json(data, "collateral tpm_quote")
    if is_trustee_quote(document):
        return trustee_quote(document, "collateral tpm_quote")
    return quote_from_json(document, "collateral tpm_quote")


def from_bundle(tee: Tee, document: Mapping[str, Any]) -> VtpmEvidence:
    where = f"{tee.value} bundle"
    only_members(document, BUNDLE_MEMBERS, where)
    own = HARDWARE_MEMBER[tee]
    other = next(member for t, member in HARDWARE_MEMBER.items() if t is not tee)
    if other in document:
        raise MalformedEvidence(f"{where} has '{other}', which is not {tee.value} evidence")
    hcl_data = b64_member(document, "hcl_report", where)
    runtime = b64_member(document, "runtime_data", where)
    report = b64_member(document, own, where)
    if hcl_data is not None and runtime is not None:
        raise MalformedEvidence(
            f"{where} has both hcl_report and runtime_data; the HCL report holds its runtime data"
        )
    hcl = None if hcl_data is None else parse_hcl_report(hcl_data)
    if hcl is not None:
        runtime = hcl.variable_data
    if runtime is None:
        raise MalformedEvidence(f"{where} needs hcl_report or runtime_data")
    if tee is Tee.SNP_VTPM:
        if hcl is not None and report is not None:
            raise MalformedEvidence(
                f"{where} has both hcl_report and snp_report; the HCL report holds its report"
            )
        if hcl is not None:
            report = hcl.snp_report()
    if report is None:
        raise MalformedEvidence(f"{where} needs {own}")
    tpm = TpmEvidence(
        quotes=(quote_from_json(document.get("tpm_quote"), "tpm_quote"),),
        ak_cert=b64_member(document, "ak_cert", where),
        ak_chain=b64_list(document, "ak_chain", where),
        event_log=b64_member(document, "event_log", where),
    )
    return VtpmEvidence(tee=tee, hardware=report, runtime_data=runtime, tpm=tpm, hcl=hcl)
