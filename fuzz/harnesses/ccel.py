"""The TDX CCEL event log (``broker/evidence/dcap/eventlog.py``): parsed, replayed to RTMR0-3
and described, as ``keybroker evidence verify`` and the TDX claims do. The log is
unauthenticated until its replay matches the quote's RTMRs, so every byte is the attacker's.
"""

from __future__ import annotations

from collections.abc import Iterator

from broker.evidence.dcap.eventlog import parse_event_log, replay
from broker.simulate.intel import event_log
from fuzz.engine import VECTORS, Harness, Target


def setup() -> Target:
    def target(data: bytes) -> None:
        log = parse_event_log(data)
        replay(log)
        for event in log.events:
            event.claim()  # describe() and the claim the TDX verifier records

    return target


def _trimmed(data: bytes) -> bytes:
    """The log without its fill (the areas are 256 KiB and 1 MiB, nearly all 0xFF)."""
    return data.rstrip(b"\xff").rstrip(b"\x00")


def seeds() -> Iterator[tuple[str, bytes]]:
    yield (
        "gcp",
        _trimmed((VECTORS / "tdx" / "go-tdx-guest-gcp-ccel" / "ccel_data.dat").read_bytes()),
    )
    yield "trustee", _trimmed((VECTORS / "tdx" / "trustee-tdx-v4-debug" / "CCEL_data").read_bytes())
    events = [(1, 0x80000001, b"\x00" * 40), (2, 0x8000000A, b"\x05kernel"), (4, 13, b"boot")]
    yield "synthetic", event_log(events, size=0)[0]


HARNESS = Harness("ccel", setup, seeds, __doc__ or "", max_len=1 << 16)
