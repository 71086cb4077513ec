"""TDX CCEL event log: the TCG crypto-agile log, replayed into RTMR0-3.

Format: TCG PC Client Platform Firmware Profile, §10.2 (crypto-agile log), read by
:mod:`broker.evidence.tpm.eventlog`, which a TPM's log shares. The CCEL area (ACPI CCEL
table, UEFI 2.10 §38.4) is larger than the log; the rest is 0x00 or 0xFF fill. A CCEL log
must record a SHA-384 bank, the only one the RTMRs use.

Mapping (UEFI 2.10 §38.4.1, EFI_CC_MEASUREMENT_PROTOCOL for TDX): the event's index field is
the CC measurement register index, 0 = MRTD, 1..4 = RTMR0..3, so RTMR index = MR index - 1.
Replay: ``RTMR[i] = SHA-384(RTMR[i] || digest)`` from 48 zero bytes for every event except
EV_NO_ACTION, which is never extended.

Only the order and the SHA-384 digests of the events are bound to the quote by the replay;
an event's type and data are not (for most types the digest covers something else, such as
the loaded image), so ``description`` is informational and ``data_matches_digest`` says
whether the digest is the hash of the event data itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from broker.errors import EventLogMismatch, MalformedEvidence
from broker.evidence.tpm import eventlog as tcg
from broker.evidence.tpm.eventlog import EV_NO_ACTION, EVENT_TYPES

SHA384_ALG_ID = 0x000C  # TPM_ALG_SHA384 (TCG Algorithm Registry)
SHA384_SIZE = 48

MAX_EVENTS = 1024
"""Most entries a log may hold after its Spec ID event (EV_NO_ACTION entries count too).

A TD's firmware, shim and boot loader log tens to a few hundred events (the GCP log of
tests/vectors/tdx/go-tdx-guest-gcp-ccel holds 43 in 18 KB of its 256 KiB area). Every event
costs its parse, a hash and a claim in the token, so a log padded with more is refused as
malformed rather than read: without the bound, the 1 MiB a request may carry holds some
16,000 minimal SHA-384 entries (66 bytes each)."""

__all__ = [
    "EVENT_TYPES",
    "EV_NO_ACTION",
    "MAX_EVENTS",
    "Event",
    "EventLog",
    "check_replay",
    "parse_event_log",
    "replay",
]


@dataclass(frozen=True, slots=True)
class Event:
    mr_index: int
    """CC measurement register index: 0 MRTD, 1..4 RTMR0..3."""
    event_type: int
    digest: bytes
    """The SHA-384 digest that was extended."""
    data: bytes

    @property
    def rtmr(self) -> int:
        return self.mr_index - 1

    @property
    def type_name(self) -> str:
        return tcg.type_name(self.event_type)

    def claim(self) -> dict[str, Any]:
        return {
            "rtmr": self.rtmr,
            "type": self.type_name,
            "digest": self.digest.hex(),
            "description": tcg.describe(self.event_type, self.data),
            "data_matches_digest": hashlib.sha384(self.data).digest() == self.digest,
        }


@dataclass(frozen=True, slots=True)
class EventLog:
    algorithms: tuple[tuple[int, int], ...]
    """(TCG algorithm id, digest size) from the Spec ID event."""
    events: tuple[Event, ...]
    """Measured events (EV_NO_ACTION entries are dropped: they are never extended)."""


def parse_event_log(data: bytes) -> EventLog:
    """Parse a CCEL area (:mod:`broker.evidence.tpm.eventlog`); ``MalformedEvidence`` for
    anything but a log followed by fill, a log without a SHA-384 bank, or an event that
    targets no RTMR."""
    log = tcg.parse_tcg_event_log(
        data, max_events=MAX_EVENTS, bound="a CCEL log holds a few hundred at most"
    )
    if (SHA384_ALG_ID, SHA384_SIZE) not in log.spec.algorithms:
        raise MalformedEvidence("event log: the Spec ID event lists no SHA-384 bank")
    events = []
    for number, entry in log.measured():
        if not 1 <= entry.index <= 4:
            raise MalformedEvidence(
                f"event log: event {number} ({entry.type_name}) targets MR index "
                f"{entry.index}, which is not RTMR0-3 (MR index 1-4)"
            )
        events.append(Event(entry.index, entry.event_type, entry.digest(SHA384_ALG_ID), entry.data))
    return EventLog(log.spec.algorithms, tuple(events))


def replay(log: EventLog) -> tuple[bytes, bytes, bytes, bytes]:
    """RTMR0-3 as the log's events extend them from zero."""
    registers = [bytes(SHA384_SIZE)] * 4
    for event in log.events:
        registers[event.rtmr] = hashlib.sha384(registers[event.rtmr] + event.digest).digest()
    return (registers[0], registers[1], registers[2], registers[3])


def check_replay(log: EventLog, rtmrs: Sequence[bytes]) -> None:
    """``EventLogMismatch`` unless the replay gives exactly the quote's RTMR0-3.

    Every register is compared, including those the log never extends (which must then be
    zero): otherwise dropping all the events of one register would go unnoticed.
    """
    replayed = replay(log)
    for index, (found, wanted) in enumerate(zip(replayed, rtmrs, strict=True)):
        if found != wanted:
            count = sum(1 for event in log.events if event.rtmr == index)
            raise EventLogMismatch(
                f"event log replays RTMR{index} ({count} events) to {found.hex()} != quote "
                f"RTMR{index} {wanted.hex()}"
            )
