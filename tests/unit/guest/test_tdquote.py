"""The TD quote from Azure's quote service (``keybroker_guest.tdquote``), against a stand-in
served over loopback HTTP (``tests/fakes/td_quote_service.py``)."""

from __future__ import annotations

import base64
import os
import socket

import pytest
from keybroker_guest.errors import EvidenceError
from keybroker_guest.tdquote import (
    HCL_HEADER_SIZE,
    IMDS_TD_QUOTE_URL,
    TD_REPORT_SIZE,
    fetch_td_quote,
    td_report_of,
)

from broker.evidence.dcap.abi import TdReportBody10, parse_quote
from broker.evidence.vtpm.hcl import HEADER_SIZE, REPORT_TYPE_TDX
from broker.evidence.vtpm.hcl import TD_REPORT_SIZE as HCL_TD_REPORT_SIZE
from broker.simulate.intel import IntelKit
from broker.simulate.vtpm import hcl_report, td_report
from broker.timeutil import utcnow
from tests.fakes.td_quote_service import TdQuoteService, serving


@pytest.fixture(scope="module")
def intel() -> IntelKit:
    return IntelKit.create(now=utcnow())


def test_azures_endpoint_is_the_link_local_metadata_address() -> None:
    assert IMDS_TD_QUOTE_URL == "http://169.254.169.254/acc/tdquote"


@pytest.mark.parametrize("padded", [False, True])
def test_the_report_goes_as_unpadded_base64url_and_the_quote_comes_back(
    intel: IntelKit, padded: bool
) -> None:
    report_data = os.urandom(64)
    report = td_report(report_data)
    service = TdQuoteService(intel, padded=padded)
    with serving(service) as url:
        quote = fetch_td_quote(report, url)
    assert service.requests == [{"report": base64.urlsafe_b64encode(report).decode().rstrip("=")}]
    body = parse_quote(quote).body
    assert isinstance(body, TdReportBody10)
    assert body.report_data == report_data


@pytest.mark.parametrize(
    ("service", "message"),
    [
        (TdQuoteService(status=503), "answered 503"),
        (TdQuoteService(answer=b"not json"), 'answered no {"quote": <base64url>}'),
        (TdQuoteService(answer=b'{"quote": ""}'), 'answered no {"quote": <base64url>}'),
        (TdQuoteService(answer=b'{"quote": 7}'), 'answered no {"quote": <base64url>}'),
        (TdQuoteService(answer=b'{"quote": "ab+/"}'), "the quote is not base64url"),
        (TdQuoteService(answer=b'{"quote": "a b"}'), "the quote is not base64url"),
    ],
)
def test_no_quote_is_an_error_that_names_the_service(service: TdQuoteService, message: str) -> None:
    with serving(service) as url, pytest.raises(EvidenceError) as caught:
        fetch_td_quote(bytes(TD_REPORT_SIZE), url)
    assert str(caught.value) == f"TD quote service {url} {message}".replace(
        f"{url} the", f"{url}: the"
    )


def test_an_unreachable_service_is_an_error() -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/acc/tdquote"
    with pytest.raises(EvidenceError, match=f"TD quote service {url}: "):
        fetch_td_quote(bytes(TD_REPORT_SIZE), url)


def test_only_a_whole_tdreport_is_sent() -> None:
    with pytest.raises(ValueError, match="a TDREPORT is 1024 bytes, not 1023"):
        fetch_td_quote(bytes(TD_REPORT_SIZE - 1), "http://127.0.0.1:9/acc/tdquote")


def test_the_tdreport_is_where_the_verifier_reads_it(intel: IntelKit) -> None:
    """The guest's offsets are the HCL report's own (broker/evidence/vtpm/hcl.py)."""
    assert (HCL_HEADER_SIZE, TD_REPORT_SIZE) == (HEADER_SIZE, HCL_TD_REPORT_SIZE)
    report = td_report(os.urandom(64))
    hcl = hcl_report(report, b"{}", report_type=REPORT_TYPE_TDX).to_bytes()
    assert td_report_of(hcl) == report
    with pytest.raises(EvidenceError, match="the HCL report is 1055 bytes: it holds no TDREPORT"):
        td_report_of(hcl[:1055])
