"""Verify what a TPM says about a machine: quotes, AK certificate and measured-boot log.

Shared by the plain vTPM (tee ``tpm``) and the paravisor vTPMs (``snp-vtpm``, ``tdx-vtpm``),
which differ only in where the AK comes from: its certificate for ``tpm``, the hardware
report's runtime data for the others. With the AK in hand, in order (each step raises):

1. the quotes (:mod:`.quote`): signature, content, PCR digest; the SHA-256 bank must be among
   those quoted, since keybroker's claims are its values (``unsupported`` otherwise);
2. the AK certificate and its chain, when given (:mod:`.akcert`);
3. the event log, when given: parsed (:mod:`.eventlog`), then replayed in every bank that is
   both logged and quoted. PCR0-9, which the firmware and the boot loader extend before the
   OS starts (TCG PC Client Platform Firmware Profile, "PCR Usage"), must replay to their
   quoted values exactly: every one of them the quote selects, a PCR the log never extends
   then being at its initial value, and a PCR the log extends must be selected. PCR10 and
   above are extended by the OS after boot (IMA, systemd) without entries in this log, so
   they are not compared and their events are neither claims nor facts. A log that does
   not replay is an error (``event-log-mismatch``), never a warning. The boot facts
   (:mod:`.boot`) are then read from the SHA-256 bank.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from broker.errors import EventLogMismatch, MalformedEvidence, UnsupportedEvidence
from broker.evidence.tpm.abi import HASH_SIZES, Alg, alg_name
from broker.evidence.tpm.akcert import load_ak_certificate, load_ak_chain, verify_ak_certificate
from broker.evidence.tpm.boot import BootFacts, boot_facts
from broker.evidence.tpm.eventlog import (
    Event,
    EventLog,
    describe,
    initial_value,
    parse_tcg_event_log,
)
from broker.evidence.tpm.quote import AkPublicKey, Quote, VerifiedQuotes, verify_quotes
from broker.evidence.trust import DEFAULT_LINKS, LinkCache, TrustedRoot

#: The PCRs the firmware and the boot loader extend before the OS runs (PC Client profile:
#: 0-7 SRTM and UEFI, 8-9 the OS loader); the ones an event log must replay.
BOOT_PCRS = range(10)


@dataclass(frozen=True, slots=True)
class VerifiedTpm:
    quotes: VerifiedQuotes
    ak_root: TrustedRoot | None
    """The root the AK certificate chained to; None when no certificate was given."""
    events: tuple[Event, ...] | None
    """The events of PCR0-9 in log order (None without a log)."""
    boot: BootFacts | None


def verify_tpm(
    quotes: Sequence[Quote],
    ak: AkPublicKey,
    *,
    ak_cert: bytes | None,
    ak_chain: Sequence[bytes],
    event_log: bytes | None,
    now: datetime,
    extra_roots: Sequence[TrustedRoot] = (),
    links: LinkCache = DEFAULT_LINKS,
    ak_fingerprint: str | None = None,
) -> VerifiedTpm:
    """Steps 1-3 of the module docstring (``ak_fingerprint``: see ``verify_quotes``)."""
    verified = verify_quotes(quotes, ak, ak_fingerprint)
    if Alg.SHA256 not in verified.pcrs:
        banks = ", ".join(alg_name(bank) for bank in verified.pcrs) or "none"
        raise UnsupportedEvidence(
            f"the TPM quote selects no PCR of the sha256 bank (only {banks}); keybroker's "
            "claims are the sha256 values"
        )
    root = None
    if ak_cert is not None:
        certificate = load_ak_certificate(ak_cert)
        chain = load_ak_chain(ak_chain)
        root = verify_ak_certificate(
            certificate, chain, ak, now=now, extra_roots=extra_roots, links=links
        )
    elif ak_chain:
        raise MalformedEvidence("ak_chain is given without the ak_cert it would chain")
    if event_log is None:
        return VerifiedTpm(verified, root, None, None)
    log = parse_tcg_event_log(event_log)
    check_replay(log, verified.pcrs)
    events = tuple(event for _, event in log.measured() if event.index in BOOT_PCRS)
    return VerifiedTpm(verified, root, events, boot_facts(log, Alg.SHA256))


def check_replay(log: EventLog, quoted: Mapping[int, Mapping[int, bytes]]) -> None:
    """``EventLogMismatch`` unless the log replays to the quoted PCR0-9 in every bank both
    hold (see the module docstring); the log must record the SHA-256 bank."""
    if Alg.SHA256 not in log.banks():
        raise UnsupportedEvidence("event log: the Spec ID event lists no sha256 bank")
    locality = log.startup_locality()
    for bank, values in quoted.items():
        if bank not in log.banks():
            continue
        replayed = log.replay(bank)
        name = alg_name(bank)
        for pcr in BOOT_PCRS:
            found = replayed.get(pcr)
            wanted = values.get(pcr)
            if wanted is None:
                if found is not None:
                    raise EventLogMismatch(
                        f"event log extends PCR{pcr}, which the quote does not select in the "
                        f"{name} bank: its events cannot be checked"
                    )
                continue
            if found is None:
                found = initial_value(pcr, HASH_SIZES[bank], locality)
                if found != wanted:
                    raise EventLogMismatch(
                        f"event log extends {name} PCR{pcr} in no event, but the quote's "
                        f"PCR{pcr} is {wanted.hex()}, not its initial value {found.hex()}"
                    )
                continue
            if found != wanted:
                count = sum(1 for _, event in log.measured() if event.index == pcr)
                raise EventLogMismatch(
                    f"event log replays {name} PCR{pcr} ({count} events) to {found.hex()} != "
                    f"quoted PCR{pcr} {wanted.hex()}"
                )


def event_claim(event: Event) -> dict[str, Any]:
    digest = event.digest(Alg.SHA256)
    return {
        "pcr": event.index,
        "type": event.type_name,
        "digest": digest.hex(),
        "description": describe(event.event_type, event.data),
        "data_matches_digest": hashlib.sha256(event.data).digest() == digest,
    }
