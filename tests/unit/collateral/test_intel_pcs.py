"""The Intel PCS client against a local fake PCS (httpx.MockTransport); no network."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import quote

import httpx
import pytest

from broker.collateral.intel_pcs import (
    DEFAULT_ROOT_CRL_URL,
    IntelPcsClient,
    PlatformId,
    platform_of,
)
from broker.errors import CollateralUnavailable
from broker.evidence.claims import Tee
from broker.evidence.dcap.collateral import TcbStatus
from broker.evidence.dcap.verify import verify_quote
from tests.unit.dcap.vectors import (
    DEBUG_TD_QUOTE,
    JUNE_2023,
    SIGNAL_2023_DIR,
    SIGNAL_2023_QUOTE,
    SPR_DIR,
)

Handler = Callable[[httpx.Request], httpx.Response]
PCCS = "https://pccs.example:8081"


def fake_pcs(
    requests: list[httpx.Request], *, tcb_header: str = "TCB-Info-Issuer-Chain"
) -> Handler:
    """Serve the go-tdx-guest June-2023 collateral the way Intel's PCS does."""
    tcb_chain = quote((SPR_DIR / "tcb_info_issuer_chain.pem").read_text())
    crl_chain = quote((SPR_DIR / "pck_crl_issuer_chain.pem").read_text())

    def handle(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        path, params = request.url.path, dict(request.url.params)
        if path == "/tdx/certification/v4/tcb" and params == {"fmspc": "50806f000000"}:
            body = (SPR_DIR / "tcbInfo.json").read_bytes()
            return httpx.Response(200, content=body, headers={tcb_header: tcb_chain})
        if path == "/tdx/certification/v4/qe/identity":
            body = (SPR_DIR / "qeIdentity.json").read_bytes()
            headers = {"SGX-Enclave-Identity-Issuer-Chain": tcb_chain}
            return httpx.Response(200, content=body, headers=headers)
        if path == "/sgx/certification/v4/pckcrl" and params == {
            "ca": "platform",
            "encoding": "der",
        }:
            body = (SPR_DIR / "pck_platform_crl.der").read_bytes()
            return httpx.Response(
                200, content=body, headers={"SGX-PCK-CRL-Issuer-Chain": crl_chain}
            )
        if str(request.url) == DEFAULT_ROOT_CRL_URL:
            return httpx.Response(200, content=(SPR_DIR / "root_ca_crl.der").read_bytes())
        if path == "/sgx/certification/v4/rootcacrl":
            return httpx.Response(
                200, content=(SPR_DIR / "root_ca_crl.der").read_bytes().hex().encode()
            )
        return httpx.Response(404, headers={"Error-Code": "NotFound"})

    return handle


def pcs(handler: Handler, base: str | None = None, **kwargs: str) -> IntelPcsClient:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return IntelPcsClient(client, base, **kwargs) if base else IntelPcsClient(client, **kwargs)


def test_platform_of_reads_the_pck() -> None:
    assert platform_of(DEBUG_TD_QUOTE.read_bytes()) == PlatformId(
        Tee.TDX, bytes.fromhex("50806f000000"), "platform"
    )
    assert platform_of(SIGNAL_2023_QUOTE.read_bytes()) == PlatformId(
        Tee.SGX, bytes.fromhex("00606a000000"), "platform"
    )


async def test_fetch_and_verify() -> None:
    requests: list[httpx.Request] = []
    client = pcs(fake_pcs(requests))
    platform = platform_of(DEBUG_TD_QUOTE.read_bytes())
    fetched = await client.quote_collateral(platform)
    assert {str(r.url.copy_with(query=None)) for r in requests} == {
        "https://api.trustedservices.intel.com/tdx/certification/v4/tcb",
        "https://api.trustedservices.intel.com/tdx/certification/v4/qe/identity",
        "https://api.trustedservices.intel.com/sgx/certification/v4/pckcrl",
        DEFAULT_ROOT_CRL_URL,
    }
    assert fetched.tcb_info.next_update == datetime(2023, 7, 18, 8, 42, 58, tzinfo=UTC)
    assert fetched.pck_crl.next_update == datetime(2023, 7, 8, 7, 27, 52, tzinfo=UTC)
    # The QE Identity (2023-07-08T07:24:59Z) is the first to need refreshing.
    assert fetched.next_update == datetime(2023, 7, 8, 7, 24, 59, tzinfo=UTC)
    assert fetched.tcb_info.issuer_chain == (SPR_DIR / "tcb_info_issuer_chain.pem").read_bytes()
    assert fetched.pck_crl.issuer_chain is not None
    assert fetched.root_crl.issuer_chain is None
    result = verify_quote(
        DEBUG_TD_QUOTE.read_bytes(), fetched.as_collateral(), now=JUNE_2023, tee=Tee.TDX
    )
    assert result.appraisal.status is TcbStatus.UP_TO_DATE


async def test_pccs_base_url_and_hex_root_crl() -> None:
    requests: list[httpx.Request] = []
    client = pcs(
        fake_pcs(requests, tcb_header="SGX-TCB-Info-Issuer-Chain"),
        PCCS + "/",
        root_crl_url=PCCS + "/sgx/certification/v4/rootcacrl",
    )
    tcb = await client.tcb_info(Tee.TDX, bytes.fromhex("50806f000000"))
    assert tcb.url == PCCS + "/tdx/certification/v4/tcb"
    root = await client.root_crl()
    assert root.body == (SPR_DIR / "root_ca_crl.der").read_bytes()
    assert root.next_update == datetime(2024, 4, 2, 10, 22, 51, tzinfo=UTC)


async def test_unknown_fmspc_is_unavailable() -> None:
    client = pcs(fake_pcs([]))
    with pytest.raises(CollateralUnavailable, match=r"HTTP 404 \(NotFound\)"):
        await client.tcb_info(Tee.SGX, bytes.fromhex("00606a000000"))


async def test_network_error_is_unavailable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(CollateralUnavailable, match="ConnectError: connection refused"):
        await pcs(refuse).qe_identity(Tee.SGX)


@pytest.mark.parametrize(
    ("response", "call", "match"),
    [
        (
            httpx.Response(200, content=b"{}"),
            lambda c: c.qe_identity(Tee.TDX),
            "has no 'enclaveIdentity' member",
        ),
        (
            httpx.Response(200, content=(SIGNAL_2023_DIR / "tcbInfo.json").read_bytes()),
            lambda c: c.tcb_info(Tee.SGX, bytes(6)),
            "no TCB-Info-Issuer-Chain header",
        ),
        (
            httpx.Response(200, content=b"not a crl"),
            lambda c: c.root_crl(),
            "DER",
        ),
        (
            httpx.Response(500, headers={"Error-Message": "busy"}),
            lambda c: c.pck_crl("processor"),
            r"HTTP 500 \(busy\)",
        ),
    ],
)
async def test_unusable_responses(response: httpx.Response, call: object, match: str) -> None:
    client = pcs(lambda request: response)
    with pytest.raises(CollateralUnavailable, match=match):
        await call(client)  # type: ignore[operator]


async def test_sgx_paths() -> None:
    requests: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(404)

    client = pcs(record)
    for call in (
        client.tcb_info(Tee.SGX, bytes.fromhex("00606a000000")),
        client.qe_identity(Tee.SGX),
        client.pck_crl("processor"),
    ):
        with pytest.raises(CollateralUnavailable):
            await call
    assert [str(r.url) for r in requests] == [
        "https://api.trustedservices.intel.com/sgx/certification/v4/tcb?fmspc=00606a000000",
        "https://api.trustedservices.intel.com/sgx/certification/v4/qe/identity",
        "https://api.trustedservices.intel.com/sgx/certification/v4/pckcrl?ca=processor&encoding=der",
    ]
