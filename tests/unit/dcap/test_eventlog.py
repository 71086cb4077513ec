from __future__ import annotations

import contextlib
import hashlib
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.errors import EventLogMismatch, EvidenceError, MalformedEvidence
from broker.evidence.dcap.abi import TdReportBody10, parse_quote
from broker.evidence.dcap.eventlog import (
    EV_NO_ACTION,
    MAX_EVENTS,
    check_replay,
    parse_event_log,
    replay,
)
from broker.evidence.dcap.reader import ByteReader

from .vectors import DEBUG_TD_DIR, DEBUG_TD_QUOTE, GCP_DIR, GCP_QUOTE

GCP_RTMRS = (
    "3fa2f61f395b7f5feefb4ec2df61297f109ad8abcd6410c1b7df60f21f37b19297fc35e544039c7e1edece752afd17f6",
    "f62dbc072bd5d3f3438b7b35c39a727f5aea2ffc2473f43723953f530daf62504f0a7944aa62c41a86e8a878c2b122c1",
    "4969684dc87381fc3b3134176c8d8806eaf0a901859f5f70cfae8d17714b46c10a8de219048c9fc09f11f381a6fbe7c1",
    "00" * 48,
)


def _gcp_log() -> bytes:
    return (GCP_DIR / "ccel_data.dat").read_bytes()


def _rtmrs(path: Path) -> tuple[bytes, bytes, bytes, bytes]:
    body = parse_quote(path.read_bytes()).body
    assert isinstance(body, TdReportBody10)
    return body.rtmrs


def test_gcp_log_replays_to_the_quote_rtmrs() -> None:
    log = parse_event_log(_gcp_log())
    assert tuple(r.hex() for r in replay(log)) == GCP_RTMRS
    check_replay(log, _rtmrs(GCP_QUOTE))
    assert len(log.events) == 43
    assert {event.rtmr for event in log.events} == {0, 1, 2}


def test_gcp_log_events_are_described() -> None:
    claims = [event.claim() for event in parse_event_log(_gcp_log()).events]
    first = claims[0]
    assert first["rtmr"] == 0
    assert first["type"] == "EV_EFI_HANDOFF_TABLES2"
    assert first["description"] == "TdxTable"
    names = [c["description"] for c in claims if c["type"] == "EV_EFI_VARIABLE_DRIVER_CONFIG"]
    assert names == ["SecureBoot", "PK", "KEK", "db", "dbx"]
    kernel = [c for c in claims if c["description"] == "/syslinux/vmlinuz.A"]
    assert kernel
    assert kernel[0]["rtmr"] == 2
    assert kernel[0]["type"] == "EV_IPL"
    separator = next(c for c in claims if c["type"] == "EV_SEPARATOR")
    assert separator["data_matches_digest"] is True


def test_trustee_log_parses_with_trustee_digests() -> None:
    log = parse_event_log((DEBUG_TD_DIR / "CCEL_data").read_bytes())
    by_description = {
        describe["description"]: describe for describe in (e.claim() for e in log.events)
    }
    # trustee eventlog.rs test_query_digest asserts these two td-shim digests.
    assert by_description["td_payload"]["digest"].startswith("5b7aa6572f649714ff00b6a2b9170516")
    assert by_description["td_payload_info"]["digest"].startswith("64ed1e5a47e8632f80faf428")
    assert by_description["td_payload"]["rtmr"] == 1


def test_trustee_log_belongs_to_another_td() -> None:
    # trustee never replays this log against tdx_quote_4: the RTMRs differ.
    log = parse_event_log((DEBUG_TD_DIR / "CCEL_data").read_bytes())
    with pytest.raises(EventLogMismatch, match="replays RTMR0 \\(2 events\\) to 2dc71230"):
        check_replay(log, _rtmrs(DEBUG_TD_QUOTE))


def test_unlogged_register_must_be_zero() -> None:
    log = parse_event_log(_gcp_log())
    rtmrs = list(_rtmrs(GCP_QUOTE))
    rtmrs[3] = b"\x01" * 48
    with pytest.raises(EventLogMismatch, match="RTMR3 \\(0 events\\)"):
        check_replay(log, rtmrs)


def test_flipped_digest_is_a_mismatch() -> None:
    data = bytearray(_gcp_log())
    digest = parse_event_log(bytes(data)).events[5].digest
    data[data.index(digest)] ^= 1
    with pytest.raises(EventLogMismatch, match="RTMR0"):
        check_replay(parse_event_log(bytes(data)), _rtmrs(GCP_QUOTE))


def _spec_header(algorithms: list[tuple[int, int]]) -> bytes:
    spec = b"Spec ID Event03\x00" + bytes(8) + struct.pack("<I", len(algorithms))
    spec += b"".join(struct.pack("<HH", alg, size) for alg, size in algorithms) + b"\x00"
    return struct.pack("<II", 0, 3) + bytes(20) + struct.pack("<I", len(spec)) + spec


def _event(index: int, event_type: int, data: bytes) -> bytes:
    digest = hashlib.sha384(data).digest()
    return (
        struct.pack("<III", index, event_type, 1)
        + struct.pack("<H", 0x0C)
        + digest
        + (struct.pack("<I", len(data)) + data)
    )


def test_synthetic_log_replays_every_register() -> None:
    data = _spec_header([(0x0C, 48)]) + b"".join(
        _event(index, 0x0D, f"event {index}".encode()) for index in (1, 2, 3, 4)
    )
    log = parse_event_log(data + b"\xff" * 64)
    expected = tuple(
        hashlib.sha384(bytes(48) + hashlib.sha384(f"event {i}".encode()).digest()).digest()
        for i in (1, 2, 3, 4)
    )
    assert replay(log) == expected
    assert [event.claim()["description"] for event in log.events] == [
        "event 1",
        "event 2",
        "event 3",
        "event 4",
    ]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (_spec_header([(0x04, 20)]), "no SHA-384 bank"),
        (struct.pack("<II", 0, 4) + bytes(64), "first entry is not EV_NO_ACTION"),
        (_spec_header([(0x0C, 48)]) + _event(0, 0x0D, b"mrtd"), "MR index 0"),
        (_spec_header([(0x0C, 48)]) + _event(5, 0x0D, b"x"), "MR index 5"),
        (_spec_header([(0x0C, 48)]) + _event(1, 0x0D, b"x")[:-1], "needs"),
        (_spec_header([(0x0C, 48)]) + _event(1, 0x0D, b"x") + b"\x01", "needs"),
        (
            _spec_header([(0x0C, 48), (0x0B, 32)]) + _event(1, 0x0D, b"x"),
            "has 1 digests, the Spec ID event lists 2",
        ),
        # Two SHA-256 digests where SHA-384 and SHA-256 are listed: no SHA-384 digest at all
        # (was a KeyError).
        (
            _spec_header([(0x0C, 48), (0x0B, 32)])
            + struct.pack("<III", 1, 0x0D, 2)
            + (struct.pack("<H", 0x0B) + bytes(32)) * 2
            + struct.pack("<I", 1)
            + b"x",
            "event 1 repeats digest algorithm 0x000b",
        ),
        (_spec_header([(0x0C, 48), (0x0C, 32)]), "lists an algorithm twice"),
    ],
)
def test_malformed_logs(data: bytes, match: str) -> None:
    with pytest.raises(MalformedEvidence, match=match):
        parse_event_log(data)


def test_no_action_events_are_not_extended() -> None:
    data = _spec_header([(0x0C, 48)]) + _event(1, 0x03, b"ignored") + _event(1, 0x04, b"\0" * 4)
    log = parse_event_log(data)
    assert [event.type_name for event in log.events] == ["EV_SEPARATOR"]


@settings(max_examples=60, deadline=None)
@given(position=st.integers(min_value=0, max_value=18100), value=st.integers(1, 255))
def test_mutated_log_raises_only_evidence_errors(position: int, value: int) -> None:
    data = bytearray(_gcp_log()[:18200])
    data[position] ^= value
    with contextlib.suppress(EvidenceError):
        check_replay(parse_event_log(bytes(data)), _rtmrs(GCP_QUOTE))


# --- bounded, linear ----------------------------------------------------------------------------


def _repeated(count: int) -> bytes:
    """The Spec ID event, then ``count`` minimal SHA-384 events, then 0xFF fill."""
    one = _event(1, 0x0D, b"")
    return _spec_header([(0x0C, 48)]) + one * count + b"\xff" * 256


def test_a_log_of_max_events_parses_and_one_more_is_malformed() -> None:
    assert len(parse_event_log(_repeated(MAX_EVENTS)).events) == MAX_EVENTS
    data = _repeated(MAX_EVENTS + 1)
    offset = len(_spec_header([(0x0C, 48)])) + MAX_EVENTS * len(_event(1, 0x0D, b""))
    with pytest.raises(MalformedEvidence) as refused:
        parse_event_log(data)
    assert refused.value.detail == (
        f"event log: more than {MAX_EVENTS} events after the Spec ID event (at offset "
        f"{offset}); a CCEL log holds a few hundred at most"
    )


def test_no_action_entries_count_toward_the_bound() -> None:
    padding = _event(1, EV_NO_ACTION, b"") * MAX_EVENTS
    data = _spec_header([(0x0C, 48)]) + padding + _event(1, 0x0D, b"x")
    with pytest.raises(MalformedEvidence, match=f"more than {MAX_EVENTS} events"):
        parse_event_log(data)


class _CountingBytes(bytes):
    """Bytes that count how many bytes the scans of the reader's fill test touch."""

    scanned = 0

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, slice) and key.stop is None:
            _CountingBytes.scanned += len(self) - (key.start or 0)  # a copy of the rest
        return super().__getitem__(key)

    def rstrip(self, chars: Any = None) -> bytes:
        _CountingBytes.scanned += len(self)
        return super().rstrip(chars)


def test_the_fill_test_scans_the_buffer_once_however_many_records_precede_it() -> None:
    """Work, not time: asking at_fill after each of n records used to copy and scan the
    rest each time (n times the buffer's length); the fill's start is found once."""
    records = 4096
    data = _CountingBytes(b"\x01" * records + bytes(1 << 16))
    reader = ByteReader(data, "test")
    _CountingBytes.scanned = 0
    taken = 0
    while not reader.at_fill():
        reader.take(1, "record")
        taken += 1
    assert taken == records
    assert _CountingBytes.scanned <= 2 * len(data)
