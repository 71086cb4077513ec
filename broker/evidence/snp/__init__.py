"""AMD SEV-SNP evidence: a raw ATTESTATION_REPORT verified to a pinned AMD root.

Layers: :mod:`.abi` (bytes <-> dataclasses), :mod:`.verify` (signature, chain, TCB
endorsement, at ``now``), :mod:`.claims` (normalised claims). See docs/snp.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from broker.evidence.claims import Claims, Tee
from broker.evidence.registry import CollateralOption, TeeVerifier
from broker.evidence.snp.claims import report_claims
from broker.evidence.snp.verify import verify_report
from broker.evidence.trust import TrustedRoot


def verify(
    evidence: bytes,
    collateral: Mapping[str, bytes],
    *,
    now: datetime,
    extra_roots: Sequence[TrustedRoot] = (),
) -> Claims:
    """Verify a raw SNP report at ``now`` and return its claims (registry contract)."""
    return report_claims(verify_report(evidence, collateral, now=now, extra_roots=extra_roots))


COLLATERAL_OPTIONS = (
    CollateralOption("vcek", "--vcek", "VCEK (or VLEK) certificate of the report, DER or PEM"),
    CollateralOption("vlek", "--vlek", "VLEK certificate of a VLEK-signed report, DER or PEM"),
    CollateralOption(
        "cert_chain",
        "--cert-chain",
        "ASK/ASVK + ARK PEM (AMD KDS cert_chain); the pinned AMD chain when absent",
    ),
    CollateralOption("crl", "--crl", "AMD KDS CRL (DER or PEM) to honour"),
    CollateralOption(
        "product",
        "--product",
        "Milan, Genoa or Turin: only for v2 reports whose certificate names no product",
        is_file=False,
    ),
)

VERIFIER = TeeVerifier(tee=Tee.SNP, verify=verify, collateral_options=COLLATERAL_OPTIONS)

__all__ = ["COLLATERAL_OPTIONS", "VERIFIER", "verify"]
