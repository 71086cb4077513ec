"""TDX claims (CLAIMS.md, tdx section) from a verified quote and, if given, its event log."""

from __future__ import annotations

from typing import Any

from broker.evidence.claims import Claims, Tee
from broker.evidence.dcap.abi import TdReportBody10, TdReportBody15
from broker.evidence.dcap.claims import flags, intel_claims
from broker.evidence.dcap.eventlog import EventLog
from broker.evidence.dcap.verify import VerifiedQuote

# TD_ATTRIBUTES bits (Intel TDX Module ABI specification, "TD_ATTRIBUTES"): TUD bits 0-7,
# SEC bits 8-31, OTHER bits 32-63.
TD_ATTRIBUTE_BITS = {
    "debug": 0,
    "icssd": 16,
    "lass": 27,
    "sept_ve_disable": 28,
    "migratable": 29,
    "pks": 30,
    "kl": 31,
    "tpa": 62,
    "perfmon": 63,
}


def td_attributes(raw: bytes) -> dict[str, Any]:
    decoded: dict[str, Any] = flags(int.from_bytes(raw, "little"), TD_ATTRIBUTE_BITS)
    decoded["raw"] = raw.hex()
    return decoded


def tdx_claims(result: VerifiedQuote, event_log: EventLog | None = None) -> Claims:
    body = result.quote.body
    if not isinstance(body, TdReportBody10):
        raise TypeError("tdx_claims needs a quote with a TD report body")
    attributes = td_attributes(body.td_attributes)
    fields: dict[str, Any] = {
        "tee_tcb_svn": body.tee_tcb_svn.hex(),
        "mr_seam": body.mr_seam.hex(),
        "mr_signer_seam": body.mr_signer_seam.hex(),
        "seam_attributes": body.seam_attributes.hex(),
        "td_attributes": attributes,
        "xfam": body.xfam.hex(),
        "mr_td": body.mr_td.hex(),
        "mr_config_id": body.mr_config_id.hex(),
        "mr_owner": body.mr_owner.hex(),
        "mr_owner_config": body.mr_owner_config.hex(),
        "rtmr": [register.hex() for register in body.rtmrs],
        "report_data": body.report_data.hex(),
        "mr_service_td": (body.mr_service_td.hex() if isinstance(body, TdReportBody15) else None),
        "event_log": (None if event_log is None else [event.claim() for event in event_log.events]),
    }
    return intel_claims(
        Tee.TDX, result, fields, debug=bool(attributes["debug"]), report_data=body.report_data
    )
