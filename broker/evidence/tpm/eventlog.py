"""The TCG crypto-agile event log: parse every bank, replay it, and write it back.

Format (TCG PC Client Platform Firmware Profile Specification, "Event Logging"): the log
opens with one ``TCG_PCClientPCREvent`` in the SHA-1 layout (PCRIndex, eventType, a 20-byte
digest, eventDataSize, event) of type EV_NO_ACTION whose data is the
``TCG_EfiSpecIdEvent`` ("Spec ID Event03": platformClass, specVersionMinor, specVersionMajor,
specErrata, uintnSize, numberOfAlgorithms, then (algorithmId, digestSize) for each, then
vendorInfoSize and vendorInfo). Every entry after it is a ``TCG_PCR_EVENT2``: PCRIndex,
eventType, ``TPML_DIGEST_VALUES`` (a count, then one (hashAlg, digest) per algorithm the Spec
ID event lists), eventSize, event. Integers are little-endian. A TPM's log is what firmware
hands the OS (Linux: ``/sys/kernel/security/tpm0/binary_bios_measurements``); the TDX CCEL
area holds the same format followed by 0x00 or 0xFF fill, which is tolerated after the last
entry and kept for :meth:`EventLog.to_bytes`.

Replay (TPM 2.0 Library Part 1, "PCR Extend"): ``PCR[i] = H(PCR[i] || digest)`` from zero
for every event but EV_NO_ACTION, which is never extended. One EV_NO_ACTION event changes the
start: the "StartupLocality" event (PC Client spec, "Startup Locality Event") says from which
locality TPM2_Startup was sent, and PCR0 then starts as that locality in its last byte.

Only the order and the digests of the events are bound to the PCRs by the replay; an event's
type and data are not (for most types the digest covers something else, such as a loaded
image), so a fact read from event data is trusted only where that data hashes to its digest
(:mod:`.boot`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from broker.errors import MalformedEvidence
from broker.evidence.dcap.reader import ByteReader
from broker.evidence.tpm.abi import HASH_NAMES

EV_NO_ACTION = 0x00000003
SPEC_ID_SIGNATURE = b"Spec ID Event03\x00"
STARTUP_LOCALITY_SIGNATURE = b"StartupLocality\x00"
_MAX_EVENT_DATA = 16 << 20
_HEADER_DIGEST_SIZE = 20  # the SHA-1 layout of the first entry

MAX_EVENTS = 1024
"""Most entries a log may hold after its Spec ID event (EV_NO_ACTION entries count too).

Firmware, shim and boot loader log tens to a few hundred events (the GCE log of
tests/vectors/tpm/go-tpm-tools-gce-cos85 holds 44 in 24 KB); each costs its parse, hashes
and a claim, so a log padded with more is refused as malformed rather than read."""

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


def type_name(event_type: int) -> str:
    return EVENT_TYPES.get(event_type, f"{event_type:#010x}")


@dataclass(frozen=True, slots=True)
class SpecId:
    """TCG_EfiSpecIdEvent: the log's format and its digest algorithms."""

    platform_class: int
    version: tuple[int, int, int]
    """(specVersionMinor, specVersionMajor, specErrata)."""
    uintn_size: int
    algorithms: tuple[tuple[int, int], ...]
    """(TPM_ALG_ID, digest size) of every bank the log records, in log order."""
    vendor_info: bytes = b""

    def to_bytes(self) -> bytes:
        out = SPEC_ID_SIGNATURE + self.platform_class.to_bytes(4, "little")
        out += bytes([*self.version, self.uintn_size])
        out += len(self.algorithms).to_bytes(4, "little")
        for alg, size in self.algorithms:
            out += alg.to_bytes(2, "little") + size.to_bytes(2, "little")
        return out + bytes([len(self.vendor_info)]) + self.vendor_info

    def sizes(self) -> dict[int, int]:
        return dict(self.algorithms)


def parse_spec_id(data: bytes) -> SpecId:
    reader = ByteReader(data, "event log: Spec ID event")
    if reader.take(16, "signature") != SPEC_ID_SIGNATURE:
        raise MalformedEvidence("event log: Spec ID event signature is not 'Spec ID Event03'")
    platform_class = reader.u32("platformClass")
    version = (
        reader.uint(1, "specVersionMinor"),
        reader.uint(1, "specVersionMajor"),
        reader.uint(1, "specErrata"),
    )
    uintn_size = reader.uint(1, "uintnSize")
    count = reader.u32("numberOfAlgorithms")
    algorithms = tuple((reader.u16("algorithmId"), reader.u16("digestSize")) for _ in range(count))
    if len({alg for alg, _ in algorithms}) != len(algorithms):
        raise MalformedEvidence("event log: Spec ID event lists an algorithm twice")
    vendor_info = reader.take(reader.uint(1, "vendorInfoSize"), "vendorInfo")
    reader.expect_end("vendorInfo")
    return SpecId(platform_class, version, uintn_size, algorithms, vendor_info)


@dataclass(frozen=True, slots=True)
class Event:
    """One TCG_PCR_EVENT2."""

    index: int
    """PCRIndex: the PCR it extends (the CC measurement register index in a CCEL log)."""
    event_type: int
    digests: tuple[tuple[int, bytes], ...]
    """(TPM_ALG_ID, digest) in log order, one per algorithm of the Spec ID event."""
    data: bytes

    @property
    def type_name(self) -> str:
        return type_name(self.event_type)

    def digest(self, alg: int) -> bytes:
        for found, digest in self.digests:
            if found == alg:
                return digest
        raise KeyError(alg)  # the parser requires every bank of the Spec ID event

    def to_bytes(self) -> bytes:
        out = self.index.to_bytes(4, "little") + self.event_type.to_bytes(4, "little")
        out += len(self.digests).to_bytes(4, "little")
        for alg, digest in self.digests:
            out += alg.to_bytes(2, "little") + digest
        return out + len(self.data).to_bytes(4, "little") + self.data


@dataclass(frozen=True, slots=True)
class EventLog:
    """A whole crypto-agile log: its header entry, every entry after it, and any fill."""

    spec: SpecId
    entries: tuple[Event, ...]
    """Every TCG_PCR_EVENT2 in log order, EV_NO_ACTION entries included."""
    header_index: int = 0
    header_digest: bytes = bytes(_HEADER_DIGEST_SIZE)
    fill: bytes = b""
    """0x00 or 0xFF bytes after the last entry (a CCEL area's unused part)."""

    def to_bytes(self) -> bytes:
        spec = self.spec.to_bytes()
        out = self.header_index.to_bytes(4, "little") + EV_NO_ACTION.to_bytes(4, "little")
        out += self.header_digest + len(spec).to_bytes(4, "little") + spec
        return out + b"".join(entry.to_bytes() for entry in self.entries) + self.fill

    def measured(self) -> Iterator[tuple[int, Event]]:
        """(entry number from 1, event) of every entry that extends a register."""
        for number, entry in enumerate(self.entries, 1):
            if entry.event_type != EV_NO_ACTION:
                yield number, entry

    def startup_locality(self) -> int | None:
        """The locality of TPM2_Startup that a StartupLocality event states, if any."""
        for entry in self.entries:
            if (
                entry.event_type == EV_NO_ACTION
                and entry.index == 0
                and len(entry.data) == len(STARTUP_LOCALITY_SIGNATURE) + 1
                and entry.data.startswith(STARTUP_LOCALITY_SIGNATURE)
            ):
                return entry.data[-1]
        return None

    def banks(self) -> tuple[int, ...]:
        return tuple(alg for alg, _ in self.spec.algorithms)

    def replay(self, alg: int) -> dict[int, bytes]:
        """The value of every PCR the log extends in the ``alg`` bank, replayed from its
        initial value (PCR0 from the startup locality)."""
        name = HASH_NAMES.get(alg)
        size = self.spec.sizes().get(alg)
        if name is None or size is None:
            raise KeyError(alg)
        registers: dict[int, bytes] = {}
        locality = self.startup_locality()
        for _, event in self.measured():
            current = registers.get(event.index)
            if current is None:
                current = initial_value(event.index, size, locality)
            registers[event.index] = hashlib.new(name, current + event.digest(alg)).digest()
        return registers


def parse_tcg_event_log(data: bytes, *, max_events: int = MAX_EVENTS, bound: str = "") -> EventLog:
    """Parse a log; ``MalformedEvidence`` for anything but a log, then fill.

    More than ``max_events`` entries after the Spec ID event is malformed; ``bound`` says
    why in the message (what such a log holds at most)."""
    cursor = ByteReader(bytes(data), "event log")
    header_index = cursor.u32("header index")
    if cursor.u32("header type") != EV_NO_ACTION:
        raise MalformedEvidence("event log: first entry is not EV_NO_ACTION (Spec ID event)")
    header_digest = cursor.take(_HEADER_DIGEST_SIZE, "header SHA-1 digest")
    spec = parse_spec_id(cursor.take(cursor.u32("header data size"), "Spec ID event"))
    sizes = spec.sizes()
    entries: list[Event] = []
    while not cursor.at_fill():
        if len(entries) == max_events:
            note = f"; {bound}" if bound else ""
            raise MalformedEvidence(
                f"event log: more than {max_events} events after the Spec ID event (at "
                f"offset {cursor.pos}){note}"
            )
        entries.append(_read_event(cursor, f"event {len(entries) + 1}", sizes))
    fill = cursor.rest()
    return EventLog(spec, tuple(entries), header_index, header_digest, fill)


def initial_value(pcr: int, size: int, locality: int | None = None) -> bytes:
    """A PCR's value before any extend: zero, except PCR0 after a startup locality event
    (its last byte is the locality; PC Client spec, "Startup Locality Event")."""
    if pcr == 0 and locality:
        return bytes(size - 1) + bytes([locality])
    return bytes(size)


def _read_event(cursor: ByteReader, where: str, sizes: Mapping[int, int]) -> Event:
    index = cursor.uint(4, f"{where} index")
    event_type = cursor.uint(4, f"{where} type")
    count = cursor.uint(4, f"{where} digest count")
    if count != len(sizes):
        raise MalformedEvidence(
            f"event log: {where} has {count} digests, the Spec ID event lists "
            f"{len(sizes)} algorithms"
        )
    digests: list[tuple[int, bytes]] = []
    for _ in range(count):
        alg = cursor.uint(2, f"{where} digest algorithm")
        if alg not in sizes:
            raise MalformedEvidence(f"event log: {where} digest algorithm {alg:#06x} unknown")
        if any(alg == seen for seen, _ in digests):  # then another bank has no digest
            raise MalformedEvidence(f"event log: {where} repeats digest algorithm {alg:#06x}")
        digests.append((alg, cursor.take(sizes[alg], f"{where} digest")))
    size = cursor.uint(4, f"{where} data size")
    if size > _MAX_EVENT_DATA:
        raise MalformedEvidence(f"event log: {where} data size {size} is implausible")
    return Event(index, event_type, tuple(digests), cursor.take(size, f"{where} data"))


_LENGTH_PREFIXED = {0x8000000A, 0x8000000B}  # UEFI_PLATFORM_FIRMWARE_BLOB2, HANDOFF_TABLES2
_VARIABLES = {0x80000001, 0x80000002, 0x8000000C, 0x800000E0}  # UEFI_VARIABLE_DATA


def describe(event_type: int, data: bytes) -> str | None:
    """A short human description from an event's data (unauthenticated: see module doc)."""
    if event_type in _LENGTH_PREFIXED and data:
        return _printable(data[1 : 1 + data[0]])
    if event_type in _VARIABLES and len(data) >= 32:
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
