"""Intel TDX evidence: DCAP quotes (v4, v5) with a TD report body, verified to the Intel SGX
Root CA with TCB appraisal, and optionally a CCEL event log replayed against RTMR0-3."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from broker.evidence.claims import Claims, Tee
from broker.evidence.dcap.abi import TdReportBody10
from broker.evidence.dcap.eventlog import check_replay, parse_event_log
from broker.evidence.dcap.options import DCAP_COLLATERAL_OPTIONS, EVENT_LOG_OPTION
from broker.evidence.dcap.verify import appraise_quote, authenticate_quote
from broker.evidence.registry import TeeVerifier
from broker.evidence.tdx.claims import tdx_claims
from broker.evidence.trust import TrustedRoot


def verify(
    evidence: bytes,
    collateral: Mapping[str, bytes],
    *,
    now: datetime,
    extra_roots: Sequence[TrustedRoot] = (),
) -> Claims:
    authenticated = authenticate_quote(
        evidence, collateral, now=now, tee=Tee.TDX, extra_roots=extra_roots
    )
    event_log = None
    checked: tuple[str, ...] = ()
    if "event_log" in collateral:
        body = authenticated.quote.body
        if not isinstance(body, TdReportBody10):  # authenticate_quote checked the TEE
            raise TypeError("TDX quote without a TD report body")
        event_log = parse_event_log(collateral["event_log"])
        check_replay(event_log, body.rtmrs)
        checked = ("event log replay to RTMR0-3",)
    result = appraise_quote(authenticated, collateral, now=now, also_verified=checked)
    return tdx_claims(result, event_log)


VERIFIER = TeeVerifier(
    tee=Tee.TDX,
    verify=verify,
    collateral_options=(*DCAP_COLLATERAL_OPTIONS, EVENT_LOG_OPTION),
)
