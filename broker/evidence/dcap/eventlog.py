"""TDX CCEL event log: parse the TCG crypto-agile log and replay it into RTMR0-3.

Format: TCG PC Client Platform Firmware Profile, §10.2 (crypto-agile log). The first entry is
a TCG_PCClientPCREvent (SHA-1 layout) of type EV_NO_ACTION whose data is the
TCG_EfiSpecIdEvent ("Spec ID Event03"), listing every digest algorithm and its size; each
following TCG_PCR_EVENT2 carries one digest per listed algorithm. The CCEL area (ACPI CCEL
table, UEFI 2.10 §38.4) is larger than the log; the rest is 0x00 or 0xFF fill.

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
from broker.evidence.dcap.reader import ByteReader

SHA384_ALG_ID = 0x000C  # TPM_ALG_SHA384 (TCG Algorithm Registry)
SHA384_SIZE = 48
EV_NO_ACTION = 0x00000003
_SPEC_ID_SIGNATURE = b"Spec ID Event03\x00"
_MAX_EVENT_DATA = 16 << 20

MAX_EVENTS = 1024
"""Most entries a log may hold after its Spec ID event (EV_NO_ACTION entries count too).

A TD's firmware, shim and boot loader log tens to a few hundred events (the GCP log of
tests/vectors/tdx/go-tdx-guest-gcp-ccel holds 43 in 18 KB of its 256 KiB area). Every event
costs its parse, a hash and a claim in the token, so a log padded with more is refused as
malformed rather than read: without the bound, the 1 MiB a request may carry holds some
16,000 minimal SHA-384 entries (66 bytes each)."""

EVENT_TYPES: dict[int, str] = {
    0x00000000: "EV_PREBOOT_CERT",
    0x00000001: "EV_POST_CODE",
    0x00000003: "EV_NO_ACTION",
    0x00000004: "EV_SEPARATOR",
    0x00000005: "EV_ACTION",
    0x00000006: "EV_EVENT_TAG",
    0x00000007: "EV_S_CRTM_CONTENTS",
    0x00000008: "EV_S_CRTM_VERSION",
    0x00000009: "EV_CPU_MICROCODE",
    0x0000000A: "EV_PLATFORM_CONFIG_FLAGS",
    0x0000000B: "EV_TABLE_OF_DEVICES",
    0x0000000C: "EV_COMPACT_HASH",
    0x0000000D: "EV_IPL",
    0x0000000E: "EV_IPL_PARTITION_DATA",
    0x0000000F: "EV_NONHOST_CODE",
    0x00000010: "EV_NONHOST_CONFIG",
    0x00000011: "EV_NONHOST_INFO",
    0x00000012: "EV_OMIT_BOOT_DEVICE_EVENTS",
    0x00000013: "EV_POST_CODE2",
    0x80000001: "EV_EFI_VARIABLE_DRIVER_CONFIG",
    0x80000002: "EV_EFI_VARIABLE_BOOT",
    0x80000003: "EV_EFI_BOOT_SERVICES_APPLICATION",
    0x80000004: "EV_EFI_BOOT_SERVICES_DRIVER",
    0x80000005: "EV_EFI_RUNTIME_SERVICES_DRIVER",
    0x80000006: "EV_EFI_GPT_EVENT",
    0x80000007: "EV_EFI_ACTION",
    0x80000008: "EV_EFI_PLATFORM_FIRMWARE_BLOB",
    0x80000009: "EV_EFI_HANDOFF_TABLES",
    0x8000000A: "EV_EFI_PLATFORM_FIRMWARE_BLOB2",
    0x8000000B: "EV_EFI_HANDOFF_TABLES2",
    0x8000000C: "EV_EFI_VARIABLE_BOOT2",
    0x80000010: "EV_EFI_HCRTM_EVENT",
    0x800000E0: "EV_EFI_VARIABLE_AUTHORITY",
    0x800000E1: "EV_EFI_SPDM_FIRMWARE_BLOB",
    0x800000E2: "EV_EFI_SPDM_FIRMWARE_CONFIG",
}
_LENGTH_PREFIXED = {0x8000000A, 0x8000000B}  # UEFI_PLATFORM_FIRMWARE_BLOB2, HANDOFF_TABLES2
_VARIABLES = {0x80000001, 0x80000002, 0x8000000C, 0x800000E0}  # UEFI_VARIABLE_DATA


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
        return EVENT_TYPES.get(self.event_type, f"{self.event_type:#010x}")

    def claim(self) -> dict[str, Any]:
        return {
            "rtmr": self.rtmr,
            "type": self.type_name,
            "digest": self.digest.hex(),
            "description": describe(self),
            "data_matches_digest": hashlib.sha384(self.data).digest() == self.digest,
        }


@dataclass(frozen=True, slots=True)
class EventLog:
    algorithms: tuple[tuple[int, int], ...]
    """(TCG algorithm id, digest size) from the Spec ID event."""
    events: tuple[Event, ...]
    """Measured events (EV_NO_ACTION entries are dropped: they are never extended)."""


def parse_event_log(data: bytes) -> EventLog:
    """Parse a CCEL area; ``MalformedEvidence`` for anything but a log followed by fill."""
    cursor = ByteReader(bytes(data), "event log")
    algorithms = _spec_id(cursor)
    sizes = dict(algorithms)
    events: list[Event] = []
    entries = 0
    while not cursor.at_fill():
        if entries == MAX_EVENTS:
            raise MalformedEvidence(
                f"event log: more than {MAX_EVENTS} events after the Spec ID event (at offset "
                f"{cursor.pos}); a CCEL log holds a few hundred at most"
            )
        entries += 1
        where = f"event {len(events) + 1}"
        mr_index = cursor.uint(4, f"{where} index")
        event_type = cursor.uint(4, f"{where} type")
        count = cursor.uint(4, f"{where} digest count")
        if count != len(algorithms):
            raise MalformedEvidence(
                f"event log: {where} has {count} digests, the Spec ID event lists "
                f"{len(algorithms)} algorithms"
            )
        digests = {}
        for _ in range(count):
            alg = cursor.uint(2, f"{where} digest algorithm")
            if alg not in sizes:
                raise MalformedEvidence(f"event log: {where} digest algorithm {alg:#06x} unknown")
            if alg in digests:  # then another bank, SHA-384 perhaps, has no digest
                raise MalformedEvidence(f"event log: {where} repeats digest algorithm {alg:#06x}")
            digests[alg] = cursor.take(sizes[alg], f"{where} digest")
        size = cursor.uint(4, f"{where} data size")
        if size > _MAX_EVENT_DATA:
            raise MalformedEvidence(f"event log: {where} data size {size} is implausible")
        payload = cursor.take(size, f"{where} data")
        if event_type == EV_NO_ACTION:
            continue
        if not 1 <= mr_index <= 4:
            raise MalformedEvidence(
                f"event log: {where} ({EVENT_TYPES.get(event_type, hex(event_type))}) targets "
                f"MR index {mr_index}, which is not RTMR0-3 (MR index 1-4)"
            )
        events.append(Event(mr_index, event_type, digests[SHA384_ALG_ID], payload))
    return EventLog(tuple(algorithms), tuple(events))


def _spec_id(cursor: ByteReader) -> list[tuple[int, int]]:
    """The first (SHA-1 format) entry must be the Spec ID event; return its algorithms."""
    cursor.uint(4, "header index")
    if cursor.uint(4, "header type") != EV_NO_ACTION:
        raise MalformedEvidence("event log: first entry is not EV_NO_ACTION (Spec ID event)")
    cursor.take(20, "header SHA-1 digest")
    spec = ByteReader(
        cursor.take(cursor.uint(4, "header data size"), "Spec ID event"), "Spec ID event"
    )
    if spec.take(16, "signature") != _SPEC_ID_SIGNATURE:
        raise MalformedEvidence("event log: Spec ID event signature is not 'Spec ID Event03'")
    spec.take(8, "platform class, version, errata and uintn size")
    count = spec.uint(4, "number of algorithms")
    algorithms = [(spec.uint(2, "algorithm id"), spec.uint(2, "digest size")) for _ in range(count)]
    if (SHA384_ALG_ID, SHA384_SIZE) not in algorithms:
        raise MalformedEvidence("event log: the Spec ID event lists no SHA-384 bank")
    if len({alg for alg, _ in algorithms}) != len(algorithms):
        # Two sizes for one algorithm: which one an event's digest has would be ambiguous.
        raise MalformedEvidence("event log: the Spec ID event lists an algorithm twice")
    return algorithms


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


def describe(event: Event) -> str | None:
    """A short human description from the event data (unauthenticated, see module doc)."""
    data = event.data
    if event.event_type in _LENGTH_PREFIXED and data:
        return _printable(data[1 : 1 + data[0]])
    if event.event_type in _VARIABLES and len(data) >= 32:
        name_chars = int.from_bytes(data[16:24], "little")
        name = data[32 : 32 + 2 * name_chars]
        try:
            return _printable(name.decode("utf-16-le").encode(), minimum=1)
        except UnicodeDecodeError:
            return None
    return _printable(data)


def _printable(data: bytes, minimum: int = 3) -> str | None:
    """The leading printable ASCII run (up to a NUL), if it is long enough to mean something."""
    text = data.split(b"\x00", 1)[0][:256]
    if len(text) < minimum or any(
        (byte < 0x20 and byte not in b"\t\n") or byte > 0x7E for byte in text
    ):
        return None
    return text.decode("ascii")
