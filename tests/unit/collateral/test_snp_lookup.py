"""SNP collateral at attest time: store first, AMD KDS (a fake) on a miss, cached after."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from broker.collateral.amd_kds import AmdKdsClient
from broker.collateral.detect import plan_import
from broker.collateral.fetcher import Fetcher
from broker.collateral.keys import crl_key
from broker.collateral.snp import SnpLookup
from broker.errors import CollateralExpired, CollateralUnavailable, MalformedEvidence
from broker.evidence.snp.abi import TcbParts
from broker.evidence.snp.products import Product
from broker.evidence.snp.verify import verify_report
from broker.simulate.snp import SnpKit
from broker.timeutil import parse_instant
from tests.unit.collateral.fakes import FakeVendor, MemoryStore

SNP = Path(__file__).parents[2] / "vectors" / "snp"
NOW = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
KDS = "https://kds.test"


@pytest.fixture(scope="module")
def kit() -> SnpKit:
    return SnpKit.generate(rsa_bits=2048)


@pytest.fixture(scope="module")
def kit_crl(kit: SnpKit) -> bytes:
    return kit.crl([], issuer="ark")


@pytest.fixture
def vendor(kit: SnpKit, kit_crl: bytes) -> FakeVendor:
    fake = FakeVendor()
    fake.serve_snp(kit, crl=kit_crl)
    return fake


def _lookup(http: httpx.AsyncClient, *, fetch: bool = True) -> SnpLookup:
    return SnpLookup(AmdKdsClient(http, KDS) if fetch else None, Fetcher(enabled=fetch))


def _verify(kit: SnpKit, evidence: bytes, collateral: dict[str, bytes]) -> None:
    verify_report(evidence, collateral, now=NOW, extra_roots=[kit.root()])


async def test_miss_is_fetched_once_then_served_from_the_store(
    kit: SnpKit, kit_crl: bytes, vendor: FakeVendor, http: httpx.AsyncClient
) -> None:
    store, lookup = MemoryStore(), _lookup(http)
    evidence = kit.sign(kit.report())
    first = await lookup.resolve(store, evidence, {}, NOW)
    assert first == {
        "vcek": kit.vcek.public_bytes(Encoding.DER),
        "cert_chain": kit.cert_chain(),
        "crl": kit_crl,
    }
    _verify(kit, evidence, first)
    assert await lookup.resolve(store, evidence, {}, NOW) == first
    assert dict(vendor.requests) == {
        f"/vcek/v1/Milan/{kit.chip_id.hex()}": 1,
        "/vcek/v1/Milan/cert_chain": 1,
        "/vcek/v1/Milan/crl": 1,
    }
    vcek = store.items[next(k for k in store.items if k.kind == "vcek")]
    assert vcek.next_update is None
    assert vcek.source == f"{KDS}/vcek/v1/Milan/{kit.chip_id.hex()}"
    assert store.items[crl_key(Product.MILAN)].next_update == dt.datetime(
        2049, 12, 31, tzinfo=dt.UTC
    )


async def test_concurrent_misses_make_one_request_each(
    kit: SnpKit, vendor: FakeVendor, http: httpx.AsyncClient
) -> None:
    store, lookup = MemoryStore(), _lookup(http)
    evidence = kit.sign(kit.report())
    results = await asyncio.gather(*(lookup.resolve(store, evidence, {}, NOW) for _ in range(20)))
    assert all(result == results[0] for result in results)
    assert sorted(vendor.requests.values()) == [1, 1, 1]


async def test_supplied_endorsement_is_used_as_is(
    kit: SnpKit, vendor: FakeVendor, http: httpx.AsyncClient
) -> None:
    evidence = kit.sign(kit.report())
    assert await _lookup(http).resolve(MemoryStore(), evidence, kit.collateral(), NOW) == {}
    vlek_only = {"vlek": b"whatever"}
    assert await _lookup(http).resolve(MemoryStore(), evidence, vlek_only, NOW) == {}
    assert not vendor.requests


async def test_kds_down_is_collateral_unavailable_and_nothing_is_stored(
    kit: SnpKit, vendor: FakeVendor, http: httpx.AsyncClient
) -> None:
    vendor.down = True
    store = MemoryStore()
    with pytest.raises(CollateralUnavailable, match=r"HTTP 503"):
        await _lookup(http).resolve(store, kit.sign(kit.report()), {}, NOW)
    assert store.items == {}


async def test_unknown_chip_at_kds_is_collateral_unavailable(
    kit: SnpKit, http: httpx.AsyncClient
) -> None:
    other_tcb = kit.report(tcb=TcbParts(bootloader=9, tee=0, snp=23, microcode=213))
    with pytest.raises(CollateralUnavailable, match=r"HTTP 404"):
        await _lookup(http).resolve(MemoryStore(), kit.sign(other_tcb), {}, NOW)


async def test_unusable_kds_document_is_unavailable_not_stored(
    kit: SnpKit, vendor: FakeVendor, http: httpx.AsyncClient
) -> None:
    vendor.add(f"/vcek/v1/Milan/{kit.chip_id.hex()}", b"<html>maintenance</html>")
    store = MemoryStore()
    with pytest.raises(CollateralUnavailable, match=r"vendor served an unusable document"):
        await _lookup(http).resolve(store, kit.sign(kit.report()), {}, NOW)
    assert not any(key.kind == "vcek" for key in store.items)


async def test_kds_crl_that_does_not_parse_is_unavailable_not_stored(
    kit: SnpKit, kit_crl: bytes, vendor: FakeVendor, http: httpx.AsyncClient
) -> None:
    version = kit_crl.index(bytes.fromhex("020101"))  # tbsCertList.version v2 (1)
    broken = kit_crl[: version + 2] + b"\x07" + kit_crl[version + 3 :]
    vendor.add("/vcek/v1/Milan/crl", broken)
    store = MemoryStore()
    with pytest.raises(CollateralUnavailable, match=r"unusable document: KDS crl does not parse"):
        await _lookup(http).resolve(store, kit.sign(kit.report()), {}, NOW)
    assert crl_key(Product.MILAN) not in store.items


async def test_an_endorsement_that_came_with_the_evidence_gets_its_stored_chain_and_crl(
    kit: SnpKit, kit_crl: bytes, vendor: FakeVendor, http: httpx.AsyncClient
) -> None:
    """Trustee's vTPM evidence embeds the VCEK alone: the product's ASK/ARK and CRL come from
    the store, never from KDS (with fetching on), and what is supplied is not looked up."""
    evidence = kit.sign(kit.report())
    vcek = {"vcek": kit.vcek.public_bytes(Encoding.DER)}
    lookup = _lookup(http)
    assert await lookup.product_documents(MemoryStore(), evidence, vcek, NOW) == {}
    plan = plan_import(
        [("chain.pem", kit.cert_chain()), ("ark.crl", kit_crl)], tee="snp", kind=None, actor="t"
    )
    store = MemoryStore(plan.items)
    found = await lookup.product_documents(store, evidence, vcek, NOW)
    assert found == {"cert_chain": kit.cert_chain(), "crl": kit_crl}
    _verify(kit, evidence, {**vcek, **found})
    supplied = {**vcek, "cert_chain": b"the guest's own"}
    assert await lookup.product_documents(store, evidence, supplied, NOW) == {"crl": kit_crl}
    assert await lookup.product_documents(store, evidence, {}, NOW) == {}  # no endorsement
    assert not vendor.requests


async def test_fetching_off_uses_only_the_store(kit: SnpKit, http: httpx.AsyncClient) -> None:
    evidence = kit.sign(kit.report())
    lookup = _lookup(http, fetch=False)
    with pytest.raises(CollateralUnavailable, match=r"collateral_fetch is off: import it"):
        await lookup.resolve(MemoryStore(), evidence, {}, NOW)
    plan = plan_import(
        [("vcek.pem", kit.vcek.public_bytes(Encoding.PEM)), ("chain.pem", kit.cert_chain())],
        tee="snp",
        kind=None,
        actor="test",
    )
    found = await lookup.resolve(MemoryStore(plan.items), evidence, {}, NOW)
    assert set(found) == {"vcek", "cert_chain"}  # no CRL stored: none checked
    _verify(kit, evidence, found)


async def test_stale_crl_is_refreshed(
    kit: SnpKit, kit_crl: bytes, vendor: FakeVendor, http: httpx.AsyncClient
) -> None:
    store, lookup = MemoryStore(), _lookup(http)
    evidence = kit.sign(kit.report())
    await lookup.resolve(store, evidence, {}, NOW)
    key = crl_key(Product.MILAN)
    old = kit.crl([], issuer="ark", next_update=NOW - dt.timedelta(days=1))
    store.items[key] = replace(store.items[key], body=old, next_update=NOW - dt.timedelta(days=1))
    found = await lookup.resolve(store, evidence, {}, NOW)
    assert found["crl"] == kit_crl
    assert vendor.count("/crl") == 2
    assert vendor.count("cert_chain") == 1  # kept for good

    # Stale and KDS down: 503, naming the expiry; with fetching off: the verifier decides.
    store.items[key] = replace(store.items[key], body=old, next_update=NOW - dt.timedelta(days=1))
    vendor.down = True
    with pytest.raises(CollateralUnavailable, match=r"crl Milan expired at its nextUpdate"):
        await lookup.resolve(store, evidence, {}, NOW)
    offline = await _lookup(http, fetch=False).resolve(store, evidence, {}, NOW)
    assert offline["crl"] == old
    with pytest.raises(CollateralExpired, match=r"CRL for ASK nextUpdate .* is before now"):
        _verify(kit, evidence, offline)


async def test_turin_vcek_is_asked_with_an_8_byte_hwid_and_fmc() -> None:
    turin = SnpKit.generate(Product.TURIN, rsa_bits=2048)
    vendor = FakeVendor()
    vendor.serve_snp(turin)
    async with vendor.client() as http:
        found = await _lookup(http).resolve(MemoryStore(), turin.sign(turin.report()), {}, NOW)
    assert found["vcek"] == turin.vcek.public_bytes(Encoding.DER)
    assert vendor.requests[f"/vcek/v1/Turin/{turin.chip_id[:8].hex()}"] == 1


async def test_malformed_report_is_malformed(http: httpx.AsyncClient) -> None:
    with pytest.raises(MalformedEvidence):
        await _lookup(http).resolve(MemoryStore(), b"\x02" * 100, {}, NOW)


# --- the real vectors ---------------------------------------------------------------------


async def test_real_report_asks_kds_for_its_own_vcek() -> None:
    """trustee's Milan report (v2, no CPUID): KDS is asked for exactly the real VCEK's URL
    (the product comes from the ``product`` collateral), the CRL is missing at the fake (no
    real AMD CRL among the vectors), and what was fetched serves the next lookup offline."""
    report = (SNP / "trustee-milan-vcek/test-report.bin").read_bytes()
    vcek = (SNP / "trustee-milan-vcek/test-vcek.der").read_bytes()
    chip = (
        "c38427a30d4c7af9d96f7a15b97269825a64cb76a2352ffd5d18115d89ad473f"
        "8e8c0bcd9a5d9286612bad4aadfb4426205a3b9e4fea82301135a170e477524e"
    )
    vendor = FakeVendor()
    vendor.add(
        f"/vcek/v1/Milan/{chip}",
        vcek,
        params={"blSPL": 3, "teeSPL": 0, "snpSPL": 8, "ucodeSPL": 115},
    )
    vendor.add(
        "/vcek/v1/Milan/cert_chain", (SNP / "amd-kds-cert-chains/ask_ark_milan.pem").read_bytes()
    )
    store = MemoryStore()
    async with vendor.client() as http:
        with pytest.raises(CollateralUnavailable, match=r"/vcek/v1/Milan/crl: HTTP 404"):
            await _lookup(http).resolve(store, report, {"product": b"Milan"}, NOW)
        assert vendor.requests[f"/vcek/v1/Milan/{chip}"] == 1
        found = await _lookup(http, fetch=False).resolve(store, report, {}, NOW)
    assert found["vcek"] == vcek
    verified = verify_report(report, found, now=parse_instant("2024-01-01T00:00:00Z"))
    assert verified.root.name == "amd-ark-milan"


async def test_real_vlek_report_finds_an_imported_vlek() -> None:
    report = (SNP / "trustee-milan-vlek/test-vlek-report.bin").read_bytes()
    vlek = (SNP / "trustee-milan-vlek/test-vlek.der").read_bytes()
    lookup = SnpLookup(None, Fetcher(enabled=True))  # KDS cannot serve VLEKs anyway
    with pytest.raises(CollateralUnavailable, match=r"no vendor serves it.*cloud provider"):
        await lookup.resolve(MemoryStore(), report, {}, NOW)
    store = MemoryStore(plan_import([("vlek.der", vlek)], tee=None, kind="vlek", actor="t").items)
    found = await lookup.resolve(store, report, {}, NOW)
    assert found == {"vlek": vlek}
    verify_report(report, found, now=parse_instant("2025-06-01T00:00:00Z"))


async def test_v2_report_without_product_searches_every_product() -> None:
    report = (SNP / "go-sev-guest-milan-v2/attestation.bin").read_bytes()
    vcek = (SNP / "go-sev-guest-milan-v2/vcek.der").read_bytes()
    lookup = SnpLookup(None, Fetcher(enabled=False))
    with pytest.raises(CollateralUnavailable, match=r"carries no CPUID.*supply the 'vcek'"):
        await lookup.resolve(MemoryStore(), report, {}, NOW)
    store = MemoryStore(plan_import([("v.der", vcek)], tee=None, kind=None, actor="t").items)
    found = await lookup.resolve(store, report, {}, NOW)
    assert found == {"vcek": vcek}
    verify_report(report, found, now=parse_instant("2023-01-01T00:00:00Z"))
