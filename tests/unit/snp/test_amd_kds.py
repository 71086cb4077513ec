"""AMD KDS client against a fake KDS (httpx.MockTransport): URLs, parameters, errors."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from broker.collateral.amd_kds import AmdKdsClient, vcek_request
from broker.errors import CollateralInvalid, CollateralUnavailable, UnsupportedEvidence
from broker.evidence.snp.abi import Cpuid, SignerInfo, SigningKey, TcbParts, parse_report
from broker.evidence.snp.products import Product
from broker.simulate.snp import SnpKit
from tests.unit.snp.conftest import GO_SEV_GUEST, SNP, TRUSTEE_VLEK

Handler = Callable[[httpx.Request], httpx.Response]


def _client(handler: Handler, base_url: str = "https://kds.test") -> AmdKdsClient:
    transport = httpx.MockTransport(handler)
    return AmdKdsClient(httpx.AsyncClient(transport=transport), base_url)


def test_vcek_request_for_a_v2_report_needs_the_product() -> None:
    report = parse_report(GO_SEV_GUEST.evidence())
    with pytest.raises(CollateralUnavailable, match=r"version 2 carries no CPUID"):
        vcek_request(report)
    request = vcek_request(report, "Milan")
    assert request.product is Product.MILAN
    assert request.path == f"/vcek/v1/Milan/{report.chip_id.hex()}"
    assert request.params == {"blSPL": 2, "teeSPL": 0, "snpSPL": 5, "ucodeSPL": 68}
    with pytest.raises(CollateralUnavailable, match=r"'Rome' is not"):
        vcek_request(report, "Rome")


def test_vcek_request_uses_reported_not_current_tcb(kit: SnpKit) -> None:
    report = dataclasses.replace(
        kit.report(tcb=TcbParts(9, 9, 99, 250)), reported_tcb=kit.report().reported_tcb
    )
    request = vcek_request(report)
    assert request.product is Product.MILAN
    assert request.params == {"blSPL": 4, "teeSPL": 0, "snpSPL": 23, "ucodeSPL": 213}


def test_turin_request_has_fmc_and_an_8_byte_hwid(turin_kit: SnpKit) -> None:
    request = vcek_request(turin_kit.report())
    assert request.hwid == turin_kit.chip_id[:8]
    assert request.path == f"/vcek/v1/Turin/{turin_kit.chip_id[:8].hex()}"
    assert request.params == {"blSPL": 1, "teeSPL": 1, "snpSPL": 3, "ucodeSPL": 72, "fmcSPL": 1}


def test_no_vcek_for_vlek_masked_or_unknown_reports(kit: SnpKit) -> None:
    with pytest.raises(CollateralUnavailable, match=r"SIGNING_KEY VLEK"):
        vcek_request(parse_report(TRUSTEE_VLEK.evidence()))
    with pytest.raises(CollateralUnavailable, match=r"CHIP_ID is masked"):
        vcek_request(kit.report(chip_id=bytes(64), signer_info=SignerInfo(mask_chip_key=True)))
    with pytest.raises(UnsupportedEvidence):
        vcek_request(kit.report(cpuid=Cpuid(0x17, 0x31, 0)))
    with pytest.raises(CollateralUnavailable, match=r"SIGNING_KEY NONE"):
        vcek_request(kit.report(signer_info=SignerInfo(SigningKey.NONE)))


async def test_fetch_vcek_builds_the_kds_url(turin_kit: SnpKit) -> None:
    seen: list[httpx.URL] = []
    der = turin_kit.vcek.public_bytes(serialization.Encoding.DER)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return httpx.Response(200, content=der)

    client = _client(handler, "https://kds.test/")
    assert await client.fetch_vcek_for(turin_kit.report()) == der
    hwid = turin_kit.chip_id[:8].hex()
    assert str(seen[0]) == (
        f"https://kds.test/vcek/v1/Turin/{hwid}?blSPL=1&teeSPL=1&snpSPL=3&ucodeSPL=72&fmcSPL=1"
    )
    with pytest.raises(ValueError, match=r"Turin hwid is 8 bytes"):
        await client.fetch_vcek(Product.TURIN, turin_kit.chip_id, turin_kit.tcb)


async def test_cert_chain_and_crl(kit: SnpKit) -> None:
    chain = (SNP / "amd-kds-cert-chains/ask_ark_genoa_vlek.pem").read_bytes()
    crl = kit.crl([], issuer="ark")
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return httpx.Response(200, content=crl if request.url.path.endswith("/crl") else chain)

    client = _client(handler)
    assert await client.fetch_cert_chain("Genoa", key="vlek") == chain
    assert await client.fetch_crl(Product.GENOA) == crl
    assert paths == ["/vlek/v1/Genoa/cert_chain", "/vcek/v1/Genoa/crl"]


@pytest.mark.parametrize(
    ("response", "match"),
    [
        (httpx.Response(404), r"HTTP 404"),
        (
            httpx.Response(429, headers={"Retry-After": "10"}),
            r"HTTP 429 \(rate limited; Retry-After 10\)",
        ),
        (httpx.Response(500), r"HTTP 500"),
    ],
)
async def test_http_errors_are_collateral_unavailable(response: httpx.Response, match: str) -> None:
    client = _client(lambda request: response)
    with pytest.raises(CollateralUnavailable, match=match):
        await client.fetch_cert_chain(Product.MILAN)


@pytest.mark.parametrize("error", [httpx.ConnectError, httpx.ReadTimeout])
async def test_transport_errors_are_collateral_unavailable(error: type[httpx.HTTPError]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error("boom", request=request)  # type: ignore[call-arg]

    with pytest.raises(CollateralUnavailable, match=rf"{error.__name__}: boom"):
        await _client(handler).fetch_crl(Product.MILAN)


async def test_bodies_that_are_not_the_document_are_invalid(kit: SnpKit) -> None:
    client = _client(lambda request: httpx.Response(200, content=b"<html>maintenance</html>"))
    with pytest.raises(CollateralInvalid, match=r"KDS VCEK"):
        await client.fetch_vcek(Product.MILAN, kit.chip_id, kit.tcb)
    with pytest.raises(CollateralInvalid, match=r"KDS crl does not parse"):
        await client.fetch_crl(Product.MILAN)
    one = _client(lambda request: httpx.Response(200, content=kit.cert_chain()[:1800]))
    with pytest.raises(CollateralInvalid):
        await one.fetch_cert_chain(Product.MILAN)
    single = kit.ark.public_bytes(serialization.Encoding.PEM)
    with pytest.raises(CollateralInvalid, match=r"holds 1 certificates, not 2"):
        await _client(lambda request: httpx.Response(200, content=single)).fetch_cert_chain("Milan")
