"""The ``tdx-vtpm`` tee (alias ``az-tdx-vtpm``): a TDX guest behind a paravisor's vTPM
(:mod:`.verify`). Collateral: the DCAP collateral of the TD quote and the vTPM parts; the
``event_log`` is the TPM's, since the paravisor measures into the vTPM, not the RTMRs."""

from __future__ import annotations

from broker.evidence.claims import Tee
from broker.evidence.dcap.options import DCAP_COLLATERAL_OPTIONS
from broker.evidence.registry import TeeVerifier
from broker.evidence.vtpm.options import TD_QUOTE_OPTION, VTPM_OPTIONS
from broker.evidence.vtpm.verify import verify_tdx_vtpm

VERIFIER = TeeVerifier(
    tee=Tee.TDX_VTPM,
    verify=verify_tdx_vtpm,
    collateral_options=(*DCAP_COLLATERAL_OPTIONS, TD_QUOTE_OPTION, *VTPM_OPTIONS),
)

__all__ = ["VERIFIER"]
