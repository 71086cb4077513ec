"""Trustee's TDX and SGX evidence JSON: real quotes and event logs through the JSON form, and
the refusals."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from broker.errors import CollateralUnavailable, EventLogMismatch, MalformedEvidence
from broker.evidence.dcap.eventlog import parse_event_log
from broker.evidence.dcap.trustee import (
    SgxEvidence,
    TdxEvidence,
    parse_sgx,
    parse_tdx,
    standard_base64,
)
from broker.evidence.tdx import VERIFIER as TDX

from .vectors import (
    COLLATERAL_LESS_NOW,
    DEBUG_TD_DIR,
    DEBUG_TD_QUOTE,
    GCP_DIR,
    GCP_QUOTE,
    OCCLUM_QUOTE,
)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _gcp() -> dict[str, Any]:
    """The GCP TD's quote and its CCEL, as a CoCo guest on it would send them."""
    return {
        "cc_eventlog": _b64((GCP_DIR / "ccel_data.dat").read_bytes()),
        "quote": _b64(GCP_QUOTE.read_bytes()),
    }


def test_tdx_evidence_carries_its_event_log_to_the_verifier() -> None:
    evidence = parse_tdx(_gcp())
    assert evidence.quote == GCP_QUOTE.read_bytes()
    assert evidence.collateral() == {"event_log": (GCP_DIR / "ccel_data.dat").read_bytes()}
    # The log replays to the quote's RTMRs; then appraisal needs TCB Info this vector lacks.
    with pytest.raises(CollateralUnavailable):
        TDX.verify(evidence.quote, evidence.collateral(), now=COLLATERAL_LESS_NOW)


def test_tdx_event_log_is_replayed() -> None:
    document = _gcp()
    log = bytearray((GCP_DIR / "ccel_data.dat").read_bytes())
    digest = parse_event_log(bytes(log)).events[5].digest
    log[log.index(digest)] ^= 1
    document["cc_eventlog"] = _b64(bytes(log))
    evidence = parse_tdx(document)
    with pytest.raises(EventLogMismatch, match="RTMR0"):
        TDX.verify(evidence.quote, evidence.collateral(), now=COLLATERAL_LESS_NOW)


@pytest.mark.parametrize("log", [None, ""])
def test_tdx_without_an_event_log(log: str | None) -> None:
    document = {**_gcp(), "cc_eventlog": log}
    evidence = parse_tdx(document)
    assert evidence.collateral() == {}
    assert evidence.to_json() == document


def test_tdx_round_trip() -> None:
    document = {
        "cc_eventlog": _b64((DEBUG_TD_DIR / "CCEL_data").read_bytes()),
        "quote": _b64(DEBUG_TD_QUOTE.read_bytes()),
    }
    assert parse_tdx(document).to_json() == document
    assert TdxEvidence(b"q", b"log").to_json() == {"cc_eventlog": "bG9n", "quote": "cQ=="}


def test_sgx_round_trip() -> None:
    document = {"quote": _b64(OCCLUM_QUOTE.read_bytes())}
    evidence = parse_sgx(document)
    assert evidence == SgxEvidence(OCCLUM_QUOTE.read_bytes())
    assert evidence.to_json() == document


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "TdxEvidence must be a JSON object"),
        ({"quote": "cQ=="}, r"exactly the members cc_eventlog, quote \(found quote\)"),
        ({"quote": "cQ==", "cc_eventlog": None, "x": 1}, "exactly the members"),
        ({"quote": 5, "cc_eventlog": None}, "quote must be standard base64 text"),
        ({"quote": "cQ", "cc_eventlog": None}, r"quote is not standard base64 \(RFC 4648 §4\)"),
        ({"quote": "cR==", "cc_eventlog": None}, "quote is not canonical standard base64"),
        ({"quote": "c Q==", "cc_eventlog": None}, "quote is not standard base64"),
        ({"quote": "cQ==", "cc_eventlog": "-_8="}, "cc_eventlog is not standard base64"),
        ({"quote": "cQ==\n", "cc_eventlog": None}, "quote is not standard base64"),
        ({"quote": "cQé=", "cc_eventlog": None}, "quote must be standard base64 text"),
    ],
)
def test_tdx_refusals(document: Any, message: str) -> None:
    with pytest.raises(MalformedEvidence, match=message):
        parse_tdx(document)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("cQ==", "SgxEvidence must be a JSON object"),
        ({"quote": "cQ==", "cc_eventlog": None}, "SgxEvidence must have exactly the members quote"),
        ({"quote": None}, "quote must be standard base64 text"),
    ],
)
def test_sgx_refusals(document: Any, message: str) -> None:
    with pytest.raises(MalformedEvidence, match=message):
        parse_sgx(document)


def test_standard_base64_is_the_reference_client_form() -> None:
    assert standard_base64("+/8=", "x") == b"\xfb\xff"
    assert standard_base64("", "x") == b""
