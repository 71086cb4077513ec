"""The ``snp-vtpm`` tee (alias ``az-snp-vtpm``): an SEV-SNP guest behind a paravisor's vTPM
(:mod:`.verify`). Collateral: SNP's (``vcek``, ``cert_chain``...) and the vTPM parts."""

from __future__ import annotations

from broker.evidence.claims import Tee
from broker.evidence.registry import TeeVerifier
from broker.evidence.snp import COLLATERAL_OPTIONS as SNP_OPTIONS
from broker.evidence.vtpm.options import VTPM_OPTIONS
from broker.evidence.vtpm.verify import verify_snp_vtpm

VERIFIER = TeeVerifier(
    tee=Tee.SNP_VTPM, verify=verify_snp_vtpm, collateral_options=(*SNP_OPTIONS, *VTPM_OPTIONS)
)

__all__ = ["VERIFIER"]
