"""The ``tpm`` claims: what a verified TPM quote, its PCRs and its event log say (:data:`CLAIMS`,
listed in docs/claims.md). Every vTPM tee (``tpm``, ``snp-vtpm``, ``tdx-vtpm``) carries them."""

from __future__ import annotations

from typing import Any

from broker.evidence.claims import (
    INDEX,
    ClaimDefinition,
    ClaimKind,
    boolean_claim,
    event_log_claims,
    hex_claim,
    integer_claim,
    list_claim,
    object_claim,
    string_claim,
    within,
)
from broker.evidence.tpm.abi import HASH_NAMES, HASH_SIZES, Alg
from broker.evidence.tpm.verify import VerifiedTpm, event_claim

#: PCRs of a PC Client TPM bank.
PCR_COUNT = 24


def _bank(alg: Alg, description: str, *, nullable: bool) -> tuple[ClaimDefinition, ...]:
    name = HASH_NAMES[alg]
    return within(
        ClaimDefinition(
            name,
            ClaimKind.MAP,
            description,
            PCR_COUNT,
            nullable,
        ),
        hex_claim(INDEX, HASH_SIZES[alg], f"PCR N of the {name} bank (lowercase hex)"),
    )


#: Every claim the ``tpm`` object holds.
CLAIMS: tuple[ClaimDefinition, ...] = within(
    object_claim("tpm", "what the TPM quote, its PCR values and its event log say"),
    *within(
        object_claim("pcrs", "the quoted PCR values by bank; only the PCRs the quote selects"),
        *_bank(Alg.SHA1, "the quoted sha1 PCRs, by index; null when not quoted", nullable=True),
        *_bank(Alg.SHA256, "the quoted sha256 PCRs, by index (always quoted)", nullable=False),
        *_bank(Alg.SHA384, "the quoted sha384 PCRs, by index; null when not quoted", nullable=True),
    ),
    hex_claim(
        "extra_data",
        None,
        "TPMS_ATTEST.extraData, the qualifying data of the quote (keybroker's binding digest)",
    ),
    hex_claim("firmware_version", 8, "TPMS_ATTEST.firmwareVersion, the vendor's (big-endian)"),
    integer_claim("clock", "TPMS_CLOCK_INFO.clock: milliseconds the TPM has run"),
    integer_claim("reset_count", "TPMS_CLOCK_INFO.resetCount: TPM resets (reboots) so far"),
    integer_claim(
        "restart_count", "TPMS_CLOCK_INFO.restartCount: restarts (hibernation) since the reset"
    ),
    boolean_claim("safe", "TPMS_CLOCK_INFO.safe: the clock never went back"),
    hex_claim("ak_fingerprint", 32, "SHA-256 of the AK public key (DER SubjectPublicKeyInfo)"),
    *event_log_claims(
        log=(
            "the events of PCR0-9 in the measured-boot log, replayed to the quoted PCRs; null "
            "without a log"
        ),
        event="one event, in log order",
        register="pcr",
        extended="the PCR it extended, 0-9",
        digest_size=32,
        digest_name="sha256",
    ),
    *within(
        object_claim("boot", "facts read from the replayed log; null without a log", nullable=True),
        ClaimDefinition(
            "secure_boot",
            ClaimKind.BOOLEAN,
            "UEFI secure boot: the SecureBoot variable measured in PCR7; null when none is",
            nullable=True,
        ),
        *within(
            list_claim(
                "efi_apps",
                None,
                "digests of the EFI applications the firmware started (PCR4), in order: boot "
                "loaders (shim, GRUB) and a kernel started as an EFI application",
            ),
            hex_claim(INDEX, 32, "the sha256 (Authenticode) digest of application N"),
        ),
        string_claim(
            "kernel_cmdline",
            "the kernel command line GRUB measured in PCR8; null when none is",
            nullable=True,
        ),
    ),
)


def tpm_fields(verified: VerifiedTpm) -> dict[str, Any]:
    """The ``tpm`` claims object of verified TPM evidence."""
    quotes = verified.quotes
    attest = quotes.attest
    banks: dict[str, Any] = {HASH_NAMES[bank]: None for bank in (Alg.SHA1, Alg.SHA256, Alg.SHA384)}
    for bank, values in quotes.pcrs.items():
        banks[HASH_NAMES[bank]] = {str(pcr): value.hex() for pcr, value in sorted(values.items())}
    clock = attest.clock_info
    return {
        "pcrs": banks,
        "extra_data": attest.extra_data.hex(),
        "firmware_version": attest.firmware_version.to_bytes(8, "big").hex(),
        "clock": clock.clock,
        "reset_count": clock.reset_count,
        "restart_count": clock.restart_count,
        "safe": clock.safe,
        "ak_fingerprint": quotes.ak_fingerprint,
        "event_log": (
            None if verified.events is None else [event_claim(e) for e in verified.events]
        ),
        "boot": None if verified.boot is None else verified.boot.claim(),
    }
