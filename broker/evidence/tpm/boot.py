"""Facts about the boot read from a replayed event log: secure boot, boot applications, the
kernel command line.

The replay binds each event's digest, in order, to a quoted PCR; the event data is not bound
unless it is what was hashed. Each fact is therefore read only from events whose data is, by
the specification that defines the event, the measured bytes, and only after checking that
those bytes hash to the event's digest in the bank the PCRs were quoted in; an event that
claims such data and does not hash to its digest is an :class:`EventLogMismatch`, never a
silently skipped fact. Where the facts come from:

* **secure boot**: the EV_EFI_VARIABLE_DRIVER_CONFIG event of the ``SecureBoot`` variable
  (EFI_GLOBAL_VARIABLE) in PCR7, whose digest is that of its UEFI_VARIABLE_DATA (TCG PC
  Client Platform Firmware Profile, "PCR[7] - Secure Boot Policy Measurements"): enabled
  when the variable's data is the single byte 1; disabled when it is 0 or empty. None when
  the log measures no such variable.
* **EFI applications**: the digests of the EV_EFI_BOOT_SERVICES_APPLICATION events in PCR4
  (the same profile, "PCR[4] - Boot Manager Code"), in order: the boot loaders the firmware
  started (shim, GRUB) and a kernel started as an EFI application. These digests are
  Authenticode hashes of the images, not of the event data, and are bound by the replay.
* **kernel command line**: the last ``kernel_cmdline:`` EV_IPL event GRUB records in PCR8,
  whose digest is that of the command line after the prefix, without its terminating NUL
  (GRUB's ``tpm`` module). None when no such event exists (another boot loader).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from broker.errors import EventLogMismatch, MalformedEvidence
from broker.evidence.tpm.abi import HASH_NAMES
from broker.evidence.tpm.eventlog import Event, EventLog

EV_IPL = 0x0000000D
EV_EFI_VARIABLE_DRIVER_CONFIG = 0x80000001
EV_EFI_BOOT_SERVICES_APPLICATION = 0x80000003
#: EFI_GLOBAL_VARIABLE, 8BE4DF61-93CA-11D2-AA0D-00E098032B8C, as EFI_GUID lays it out in
#: memory (the first three fields little-endian): UEFI 2.10, "Globally Defined Variables".
EFI_GLOBAL_VARIABLE = bytes.fromhex("61dfe48bca93d211aa0d00e098032b8c")
SECURE_BOOT_PCR = 7
BOOT_MANAGER_PCR = 4
GRUB_STRING_PCR = 8
GRUB_KERNEL_CMDLINE = b"kernel_cmdline: "


@dataclass(frozen=True, slots=True)
class BootFacts:
    secure_boot: bool | None
    efi_apps: tuple[bytes, ...]
    kernel_cmdline: str | None

    def claim(self) -> dict[str, Any]:
        return {
            "secure_boot": self.secure_boot,
            "efi_apps": [digest.hex() for digest in self.efi_apps],
            "kernel_cmdline": self.kernel_cmdline,
        }


def boot_facts(log: EventLog, alg: int) -> BootFacts:
    """The facts above, from the ``alg`` bank of a log already replayed to quoted PCRs."""
    secure_boot: bool | None = None
    efi_apps: list[bytes] = []
    cmdline: str | None = None
    for number, event in log.measured():
        if event.index == SECURE_BOOT_PCR and event.event_type == EV_EFI_VARIABLE_DRIVER_CONFIG:
            state = _secure_boot(number, event, alg)
            if state is not None:
                if secure_boot is not None and state != secure_boot:
                    raise EventLogMismatch(
                        f"event log: event {number} measures SecureBoot "
                        f"{_on(state)} after an earlier event measured it {_on(secure_boot)}"
                    )
                secure_boot = state
        elif (
            event.index == BOOT_MANAGER_PCR and event.event_type == EV_EFI_BOOT_SERVICES_APPLICATION
        ):
            efi_apps.append(event.digest(alg))
        elif (
            event.index == GRUB_STRING_PCR
            and event.event_type == EV_IPL
            and event.data.startswith(GRUB_KERNEL_CMDLINE)
        ):
            cmdline = _kernel_cmdline(number, event, alg)
    return BootFacts(secure_boot, tuple(efi_apps), cmdline)


def _on(state: bool) -> str:
    return "on" if state else "off"


def _hash(alg: int, data: bytes) -> bytes:
    return hashlib.new(HASH_NAMES[alg], data).digest()


def _check_digest(number: int, event: Event, alg: int, measured: bytes, what: str) -> None:
    found = _hash(alg, measured)
    wanted = event.digest(alg)
    if found != wanted:
        raise EventLogMismatch(
            f"event log: event {number} ({event.type_name}, {what}) data hashes to "
            f"{HASH_NAMES[alg]} {found.hex()} != its digest {wanted.hex()}"
        )


def _secure_boot(number: int, event: Event, alg: int) -> bool | None:
    """The SecureBoot state an EV_EFI_VARIABLE_DRIVER_CONFIG event measures, or None when
    it measures another variable. UEFI_VARIABLE_DATA: VariableName (EFI_GUID),
    UnicodeNameLength (UINT64, in CHAR16), VariableDataLength (UINT64), UnicodeName,
    VariableData."""
    data = event.data
    if len(data) < 32:
        raise MalformedEvidence(
            f"event log: event {number} (EV_EFI_VARIABLE_DRIVER_CONFIG) holds {len(data)} "
            "bytes, less than a UEFI_VARIABLE_DATA header (32)"
        )
    name_chars = int.from_bytes(data[16:24], "little")
    value_size = int.from_bytes(data[24:32], "little")
    if 32 + 2 * name_chars + value_size != len(data):
        raise MalformedEvidence(
            f"event log: event {number} (EV_EFI_VARIABLE_DRIVER_CONFIG) UEFI_VARIABLE_DATA "
            f"lengths ({name_chars} name characters, {value_size} data bytes) do not add up "
            f"to its {len(data)} bytes"
        )
    name = data[32 : 32 + 2 * name_chars]
    if data[:16] != EFI_GLOBAL_VARIABLE or name != "SecureBoot".encode("utf-16-le"):
        return None
    _check_digest(number, event, alg, data, "SecureBoot")
    value = data[32 + 2 * name_chars :]
    if value not in (b"", b"\x00", b"\x01"):
        raise MalformedEvidence(
            f"event log: event {number} measures SecureBoot = {value.hex()}, not 0 or 1"
        )
    return value == b"\x01"


def _kernel_cmdline(number: int, event: Event, alg: int) -> str:
    text = event.data[len(GRUB_KERNEL_CMDLINE) :]
    measured = text[:-1] if text.endswith(b"\x00") else text
    _check_digest(number, event, alg, measured, "GRUB kernel_cmdline")
    try:
        return measured.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedEvidence(
            f"event log: event {number} kernel command line is not UTF-8"
        ) from None
