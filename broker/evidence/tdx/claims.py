"""TDX claims from a verified quote and, if given, its event log (:data:`CLAIMS`, listed in
docs/claims.md; the quote and platform claims of :mod:`broker.evidence.dcap.claims` come
with them)."""

from __future__ import annotations

from typing import Any

from broker.evidence.claims import (
    INDEX,
    ClaimDefinition,
    Claims,
    Tee,
    event_log_claims,
    hex_claim,
    list_claim,
    object_claim,
    within,
)
from broker.evidence.dcap.abi import TdReportBody10, TdReportBody15
from broker.evidence.dcap.claims import (
    FlagTable,
    bit_positions,
    flag_claims,
    flags,
    intel_claims,
)
from broker.evidence.dcap.eventlog import EventLog
from broker.evidence.dcap.verify import VerifiedQuote

# TD_ATTRIBUTES bits (Intel TDX Module ABI specification, "TD_ATTRIBUTES"): TUD bits 0-7,
# SEC bits 8-31, OTHER bits 32-63.
_TD_ATTRIBUTE_FLAGS: FlagTable = (
    ("debug", 0, "DEBUG: a debug TD, whose state the host can read (= debug)"),
    ("icssd", 16, "ICSSD"),
    ("lass", 27, "LASS: the TD may use linear address space separation"),
    ("sept_ve_disable", 28, "SEPT_VE_DISABLE: EPT violations on pending pages raise no #VE"),
    ("migratable", 29, "MIGRATABLE: the TD may be migrated"),
    ("pks", 30, "PKS: the TD may use supervisor protection keys"),
    ("kl", 31, "KL: the TD may use Key Locker"),
    ("tpa", 62, "TPA"),
    ("perfmon", 63, "PERFMON: the TD may use the CPU's performance monitoring"),
)
TD_ATTRIBUTE_BITS = bit_positions(_TD_ATTRIBUTE_FLAGS)

#: The claims of the TD report body, in quote body order (tdx and tdx-vtpm).
BODY_CLAIMS: tuple[ClaimDefinition, ...] = (
    hex_claim(
        "tee_tcb_svn",
        16,
        "TEE_TCB_SVN: [0] the TDX module's SVN, [1] its major version, then other components",
    ),
    hex_claim("mr_seam", 48, "MRSEAM: measurement of the TDX module"),
    hex_claim("mr_signer_seam", 48, "MRSIGNERSEAM: signer of the TDX module (zero for Intel's)"),
    hex_claim("seam_attributes", 8, "SEAMATTRIBUTES: attributes of the TDX module"),
    *within(
        object_claim("td_attributes", "TD_ATTRIBUTES, fixed when the TD is created, by bit"),
        *flag_claims(_TD_ATTRIBUTE_FLAGS),
        hex_claim("raw", 8, "the 8 TD_ATTRIBUTES bytes as the quote carries them"),
    ),
    hex_claim("xfam", 8, "XFAM: the extended CPU features the TD may use"),
    hex_claim("mr_td", 48, "MRTD: measurement of the TD's initial memory, the virtual firmware"),
    hex_claim("mr_config_id", 48, "MRCONFIGID: an identifier the host sets at TD creation"),
    hex_claim("mr_owner", 48, "MROWNER: the TD owner's identity, set by the host"),
    hex_claim("mr_owner_config", 48, "MROWNERCONFIG: the owner's configuration, set by the host"),
    *within(
        list_claim("rtmr", 4, "RTMR0-3: runtime measurement registers, extended during boot"),
        hex_claim(
            INDEX,
            48,
            "RTMR N: 0 firmware configuration, 1 boot loader and kernel, 2 kernel command line "
            "and OS, 3 application",
        ),
    ),
    hex_claim("report_data", 64, "the 64 bytes the TD chose (keybroker binds its challenge here)"),
    hex_claim(
        "mr_service_td",
        48,
        "MRSERVICETD: the service TDs bound to the TD (TD 1.5 body of a v5 quote); null before",
        nullable=True,
    ),
)

#: The claims of a CCEL event log (tdx only: behind a paravisor, the vTPM's log is read).
EVENT_LOG_CLAIMS: tuple[ClaimDefinition, ...] = (
    *event_log_claims(
        log=(
            "the measured events of the CCEL event log, replayed into RTMR0-3; null without "
            "event_log collateral"
        ),
        event="one measured event, in log order",
        register="rtmr",
        extended="the RTMR it extended, 0-3",
        digest_size=48,
        digest_name="SHA-384",
    ),
)

#: Every claim :func:`tdx_claims` produces besides the dcap ones.
CLAIMS: tuple[ClaimDefinition, ...] = (*BODY_CLAIMS, *EVENT_LOG_CLAIMS)


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
