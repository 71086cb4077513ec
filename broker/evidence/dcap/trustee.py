"""Trustee's Intel evidence JSON: the quote (and TDX event log) as standard base64 text.

Confidential Containers guests send, as the KBS ``primary_evidence``, ``{"quote": <base64>}``
for SGX (guest-components' ``SgxDcapAttesterEvidence``) and ``{"cc_eventlog": <base64> | null,
"quote": <base64>}`` for TDX (``TdxEvidence``): the raw DCAP quote, and the CCEL event log the
guest read from ``/sys/firmware/acpi/tables/data/CCEL`` (possibly followed by the attestation
agent's own events in TCG2 encoding), both in standard base64 with padding, which is what the
reference client writes and Trustee reads (RFC 4648 §4).

Only a translation (ARCHITECTURE §8): the quote becomes the native evidence and the event log
the ``event_log`` collateral, which the TDX verifier replays into RTMR0-3. An empty
``cc_eventlog`` means no log, as Trustee reads it. ``to_json`` is the exact inverse of the
parsers.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from broker.errors import MalformedEvidence


@dataclass(frozen=True, slots=True)
class TdxEvidence:
    quote: bytes
    cc_eventlog: bytes | None
    """The event log; ``b""`` when the guest sent an empty string, None when null."""

    def collateral(self) -> dict[str, bytes]:
        return {"event_log": self.cc_eventlog} if self.cc_eventlog else {}

    def to_json(self) -> dict[str, Any]:
        log = None if self.cc_eventlog is None else _encode(self.cc_eventlog)
        return {"cc_eventlog": log, "quote": _encode(self.quote)}


@dataclass(frozen=True, slots=True)
class SgxEvidence:
    quote: bytes

    def to_json(self) -> dict[str, Any]:
        return {"quote": _encode(self.quote)}


def parse_tdx(document: Any) -> TdxEvidence:
    """Trustee's ``TdxEvidence``; ``MalformedEvidence`` when the value is not one."""
    members = _object(document, "TdxEvidence", {"cc_eventlog", "quote"})
    log = members["cc_eventlog"]
    return TdxEvidence(
        quote=standard_base64(members["quote"], "quote"),
        cc_eventlog=None if log is None else standard_base64(log, "cc_eventlog"),
    )


def parse_sgx(document: Any) -> SgxEvidence:
    """Trustee's ``SgxEvidence``; ``MalformedEvidence`` when the value is not one."""
    members = _object(document, "SgxEvidence", {"quote"})
    return SgxEvidence(quote=standard_base64(members["quote"], "quote"))


def _object(value: Any, what: str, names: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedEvidence(f"{what} must be a JSON object")
    if value.keys() != names:
        raise MalformedEvidence(
            f"{what} must have exactly the members {', '.join(sorted(names))} "
            f"(found {', '.join(sorted(value)) or 'none'})"
        )
    return value


def standard_base64(value: Any, what: str) -> bytes:
    """RFC 4648 §4 base64 with its padding, one spelling per value: no whitespace, no URL
    alphabet, no non-zero bits after the last byte (Rust's ``STANDARD`` engine refuses those
    too, so nothing is read that Trustee would not read)."""
    if not isinstance(value, str) or not value.isascii():
        raise MalformedEvidence(f"{what} must be standard base64 text")
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedEvidence(f"{what} is not standard base64 (RFC 4648 §4)") from None
    if _encode(decoded) != value:
        raise MalformedEvidence(f"{what} is not canonical standard base64 (RFC 4648 §3.5)")
    return decoded


def _encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
