"""Evidence from a vTPM: a confidential VM behind Azure's paravisor (``snp-vtpm``,
``tdx-vtpm``) or a GCE shielded VM (``tpm``), as keybroker's bundle (docs/vtpm.md).

The guest cannot choose its hardware report's REPORT_DATA (the paravisor binds its runtime
data there), so the binding digest goes into the vTPM's quote as qualifying data (extraData):

* ``snp-vtpm``: the HCL report read from NV index 0x01400001 (the SNP report and the runtime
  data naming the AK), and a quote of the sha256 PCRs by the AK at 0x81000003;
* ``tdx-vtpm``: the same, with the TD quote of the HCL report's TDREPORT, which Azure's host
  makes (:mod:`keybroker_guest.tdquote`: the metadata service's ``/acc/tdquote``), or which
  the caller supplies (the simulation);
* ``tpm``: the quote by the AK and its certificate from NV index 0x01C10000 (GCE).

The AK certificate of an Azure vTPM (NV index 0x01C101D0) is sent when the index exists.
:class:`broker.simulate.guests.SimulatedVtpm` runs exactly this against swtpm, provisioned by
:mod:`broker.simulate.swtpm` as the cloud would.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from keybroker_guest.tdquote import IMDS_TD_QUOTE_URL, fetch_td_quote, td_report_of
from keybroker_guest.tpm2 import (
    AZURE_AK_CERT_INDEX,
    AZURE_AK_HANDLE,
    AZURE_HCL_REPORT_INDEX,
    GCE_AK_CERT_INDEX,
    Tpm2Tools,
)

if TYPE_CHECKING:
    from keybroker_guest.evidence import BindingInput

VTPM_TEES = ("snp-vtpm", "tdx-vtpm", "tpm")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass
class VtpmGuest:
    """The guest's side of a vTPM (module docstring)."""

    tee: str
    tools: Tpm2Tools = field(default_factory=Tpm2Tools)
    ak_handle: int = AZURE_AK_HANDLE
    td_quote: bytes | None = None
    """``tdx-vtpm``: the TD quote of the HCL report's TDREPORT; None asks the host's quote
    service at ``td_quote_url`` for it."""
    collateral: dict[str, bytes] = field(default_factory=dict)
    td_quote_url: str = IMDS_TD_QUOTE_URL

    def produce(self, binding: BindingInput) -> tuple[bytes, dict[str, bytes]]:
        if self.tee not in VTPM_TEES:
            raise ValueError(f"tee {self.tee} is not one of {', '.join(VTPM_TEES)}")
        bundle: dict[str, Any] = {}
        if self.tee != "tpm":
            hcl = self.tools.nv_read(AZURE_HCL_REPORT_INDEX)
            bundle["hcl_report"] = _b64(hcl)
        if self.tee == "tdx-vtpm":
            td_quote = self.td_quote
            if td_quote is None:
                td_quote = fetch_td_quote(td_report_of(hcl), self.td_quote_url)
            bundle["td_quote"] = _b64(td_quote)
        quote = self.tools.quote(self.ak_handle, binding.digest or binding.report_data)
        bundle["tpm_quote"] = {
            "message": _b64(quote.message),
            "signature": _b64(quote.signature),
            "pcrs": {"sha256": {str(pcr): value.hex() for pcr, value in quote.sha256.items()}},
        }
        cert_index = GCE_AK_CERT_INDEX if self.tee == "tpm" else AZURE_AK_CERT_INDEX
        if self.tee == "tpm" or self.tools.nv_exists(cert_index):
            bundle["ak_cert"] = _b64(self.tools.nv_read(cert_index))
        return json.dumps(bundle).encode(), dict(self.collateral)
