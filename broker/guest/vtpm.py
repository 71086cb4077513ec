"""Evidence from a vTPM: a confidential VM behind Azure's paravisor (``snp-vtpm``,
``tdx-vtpm``) or a GCE shielded VM (``tpm``), as keybroker's bundle (docs/vtpm.md).

The guest cannot choose its hardware report's REPORT_DATA (the paravisor binds its runtime
data there), so the binding digest goes into the vTPM's quote as qualifying data (extraData):

* ``snp-vtpm``: the HCL report read from NV index 0x01400001 (the SNP report and the runtime
  data naming the AK), and a quote of the sha256 PCRs by the AK at 0x81000003;
* ``tdx-vtpm``: the same, with the TD quote of the HCL report's TDREPORT, which the caller
  supplies (on Azure the host's quoting service makes it);
* ``tpm``: the quote by the AK and its certificate from NV index 0x01C10000 (GCE).

The AK certificate of an Azure vTPM (NV index 0x01C101D0) is sent when the index exists.
:class:`SimulatedVtpm` runs exactly this against swtpm, provisioned by
:mod:`broker.simulate.swtpm` as the cloud would.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker.evidence.claims import Tee
from broker.guest.sources import BindingInput
from broker.guest.tpm2 import (
    AZURE_AK_CERT_INDEX,
    AZURE_AK_HANDLE,
    AZURE_HCL_REPORT_INDEX,
    GCE_AK_CERT_INDEX,
    Tpm2Tools,
)
from broker.simulate.intel import IntelKit
from broker.simulate.snp import SnpKit
from broker.simulate.swtpm import SimulatedPlatform, swtpm
from broker.simulate.tpm import AkAuthority
from broker.timeutil import utcnow

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
    """``tdx-vtpm``: the TD quote of the HCL report's TDREPORT."""
    collateral: dict[str, bytes] = field(default_factory=dict)

    def produce(self, binding: BindingInput) -> tuple[bytes, dict[str, bytes]]:
        if self.tee not in VTPM_TEES:
            raise ValueError(f"tee {self.tee} is not one of {', '.join(VTPM_TEES)}")
        bundle: dict[str, Any] = {}
        if self.tee != "tpm":
            bundle["hcl_report"] = _b64(self.tools.nv_read(AZURE_HCL_REPORT_INDEX))
        if self.tee == "tdx-vtpm":
            if self.td_quote is None:
                raise ValueError("tdx-vtpm needs the TD quote of the HCL report's TDREPORT")
            bundle["td_quote"] = _b64(self.td_quote)
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


@dataclass
class SimulatedVtpm:
    """A vTPM guest on swtpm (state in ``kit_dir/swtpm-<tee>``), its platform provisioned
    from the synthetic kit in ``kit_dir``: the AMD kit (``snp-vtpm``), the Intel kit
    (``tdx-vtpm``) or a saved :class:`~broker.simulate.tpm.AkAuthority` (``tpm``)."""

    kit_dir: Path
    tee: str

    def produce(self, binding: BindingInput) -> tuple[bytes, dict[str, bytes]]:
        with swtpm(self.kit_dir / f"swtpm-{self.tee}") as tools:
            platform = SimulatedPlatform(tools)
            platform.boot()
            guest = VtpmGuest(self.tee, tools)
            if self.tee == "snp-vtpm":
                kit = SnpKit.load(self.kit_dir)
                platform.azure_snp(kit)
                guest.collateral = kit.collateral()
            elif self.tee == "tdx-vtpm":
                intel = IntelKit.load(self.kit_dir)
                guest.td_quote = platform.azure_tdx(intel)
                guest.collateral = intel.collateral(Tee.TDX, now=utcnow())
            else:
                authority = AkAuthority.load(self.kit_dir)
                platform.gce(authority)
                # A GCE guest reads only its AK certificate; the broker pins Google's
                # intermediates, but not the synthetic CA's, which travels as collateral.
                guest.collateral = {"ak_chain": authority.chain_pem()}
            return guest.produce(binding)
