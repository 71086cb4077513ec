"""Intel SGX evidence: DCAP quotes (v3, v4, v5) with an enclave report body, verified to the
Intel SGX Root CA with TCB appraisal."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from broker.evidence.claims import Claims, Tee
from broker.evidence.dcap.options import DCAP_COLLATERAL_OPTIONS
from broker.evidence.dcap.verify import verify_quote
from broker.evidence.registry import TeeVerifier
from broker.evidence.sgx.claims import sgx_claims
from broker.evidence.trust import TrustedRoot


def verify(
    evidence: bytes,
    collateral: Mapping[str, bytes],
    *,
    now: datetime,
    extra_roots: Sequence[TrustedRoot] = (),
) -> Claims:
    result = verify_quote(evidence, collateral, now=now, tee=Tee.SGX, extra_roots=extra_roots)
    return sgx_claims(result)


VERIFIER = TeeVerifier(tee=Tee.SGX, verify=verify, collateral_options=DCAP_COLLATERAL_OPTIONS)
