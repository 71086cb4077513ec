"""TDX/SGX collateral at attest time: store first, Intel PCS (a fake) on a miss or when
stale at nextUpdate, cached after."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.collateral.amd_kds import AmdKdsClient
from broker.collateral.dcap import DcapLookup, platform_keys
from broker.collateral.fetcher import Fetcher
from broker.collateral.intel_pcs import IntelPcsClient, platform_of
from broker.collateral.keys import TCB_SIGNING_ITEM, ItemKey
from broker.collateral.snp import SnpLookup
from broker.errors import (
    CollateralExpired,
    CollateralUnavailable,
    EvidenceError,
    MalformedEvidence,
)
from broker.evidence.claims import Tee
from broker.evidence.dcap.collateral import TcbStatus
from broker.evidence.dcap.verify import verify_quote
from broker.simulate.intel import IntelKit
from broker.simulate.snp import SnpKit
from tests.unit.collateral.fakes import ROOT_CRL_PATH, FakeVendor, MemoryStore
from tests.unit.collateral.test_intel_pcs import fake_pcs
from tests.unit.dcap.vectors import DEBUG_TD_QUOTE, JUNE_2023, spr_collateral

NOW = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
PCS = "https://pcs.test"
DAY = dt.timedelta(days=1)


@pytest.fixture(scope="module")
def kit() -> IntelKit:
    return IntelKit.create(now=NOW)


@pytest.fixture
def vendor(kit: IntelKit) -> FakeVendor:
    fake = FakeVendor()
    fake.serve_intel(kit, NOW)
    return fake


def _lookup(http: httpx.AsyncClient, *, fetch: bool = True) -> DcapLookup:
    pcs = IntelPcsClient(http, PCS, root_crl_url=PCS + ROOT_CRL_PATH) if fetch else None
    return DcapLookup(pcs, Fetcher(enabled=fetch))


def _quote(kit: IntelKit, tee: Tee) -> bytes:
    return kit.tdx_quote() if tee is Tee.TDX else kit.sgx_quote()


@pytest.mark.parametrize("tee", [Tee.TDX, Tee.SGX])
async def test_miss_is_fetched_once_then_served_from_the_store(
    kit: IntelKit, vendor: FakeVendor, http: httpx.AsyncClient, tee: Tee
) -> None:
    store, lookup = MemoryStore(), _lookup(http)
    quote = _quote(kit, tee)
    found = await lookup.resolve(store, quote, {}, NOW)
    assert set(found) == {"tcb_info", "qe_identity", "pck_crl", "root_crl", "tcb_signing_chain"}
    assert found["tcb_signing_chain"] == kit.tcb_signing_chain()
    result = verify_quote(quote, found, now=NOW, tee=tee, extra_roots=kit.extra_roots())
    assert result.appraisal.status is TcbStatus.UP_TO_DATE
    assert await lookup.resolve(store, quote, {}, NOW) == found
    assert dict(vendor.requests) == {
        f"/{tee.value}/certification/v4/tcb": 1,
        f"/{tee.value}/certification/v4/qe/identity": 1,
        "/sgx/certification/v4/pckcrl": 1,
        ROOT_CRL_PATH: 1,
    }
    keys = platform_keys(platform_of(quote))
    assert keys["tcb_info"] == ItemKey(tee.value, "tcb_info", kit.platform.fmspc.hex())
    assert store.items[keys["tcb_info"]].next_update == NOW + 30 * DAY
    assert store.items[keys["tcb_info"]].source == f"{PCS}/{tee.value}/certification/v4/tcb"
    assert store.items[TCB_SIGNING_ITEM].next_update is None


async def test_tdx_and_sgx_share_the_sgx_pki_items(
    kit: IntelKit, vendor: FakeVendor, http: httpx.AsyncClient
) -> None:
    store, lookup = MemoryStore(), _lookup(http)
    await lookup.resolve(store, kit.tdx_quote(), {}, NOW)
    await lookup.resolve(store, kit.sgx_quote(), {}, NOW)
    assert vendor.count("pckcrl") == 1
    assert vendor.count(ROOT_CRL_PATH) == 1
    assert vendor.count("/tcb") == 2  # one per TEE


async def test_stale_items_are_refetched_at_next_update(
    kit: IntelKit, vendor: FakeVendor, http: httpx.AsyncClient
) -> None:
    store, lookup = MemoryStore(), _lookup(http)
    quote = kit.tdx_quote()
    await lookup.resolve(store, quote, {}, NOW)
    at_next_update = NOW + 30 * DAY
    await lookup.resolve(store, quote, {}, at_next_update)  # not yet past it
    assert sum(vendor.requests.values()) == 4
    later = at_next_update + dt.timedelta(seconds=1)
    vendor.serve_intel(kit, later)  # PCS now serves documents issued later
    found = await lookup.resolve(store, quote, {}, later)
    assert vendor.count("/tcb") == 2
    assert vendor.count("qe/identity") == 2
    assert vendor.count("pckcrl") == 2
    assert vendor.count(ROOT_CRL_PATH) == 1  # the root CRL lives 365 days here
    verify_quote(quote, found, now=later, tee=Tee.TDX, extra_roots=kit.extra_roots())


async def test_concurrent_misses_make_one_request_each(
    kit: IntelKit, vendor: FakeVendor, http: httpx.AsyncClient
) -> None:
    store, lookup = MemoryStore(), _lookup(http)
    quote = kit.sgx_quote()
    results = await asyncio.gather(*(lookup.resolve(store, quote, {}, NOW) for _ in range(20)))
    assert all(result == results[0] for result in results)
    assert sorted(vendor.requests.values()) == [1, 1, 1, 1]


async def test_supplied_collateral_wins_and_is_not_fetched(
    kit: IntelKit, vendor: FakeVendor, http: httpx.AsyncClient
) -> None:
    quote = kit.tdx_quote()
    supplied = kit.collateral(Tee.TDX, now=NOW)
    assert await _lookup(http).resolve(MemoryStore(), quote, supplied, NOW) == {}
    partial = {name: supplied[name] for name in ("tcb_info", "tcb_signing_chain")}
    found = await _lookup(http).resolve(MemoryStore(), quote, partial, NOW)
    assert set(found) == {"qe_identity", "pck_crl", "root_crl"}
    assert vendor.count("/tcb") == 0


async def test_pcs_down(kit: IntelKit, vendor: FakeVendor, http: httpx.AsyncClient) -> None:
    vendor.down = True
    store = MemoryStore()
    with pytest.raises(CollateralUnavailable, match=r"HTTP 503"):
        await _lookup(http).resolve(store, kit.tdx_quote(), {}, NOW)
    assert store.items == {}


async def test_stale_and_pcs_down_names_the_expiry(
    kit: IntelKit, vendor: FakeVendor, http: httpx.AsyncClient
) -> None:
    store, lookup = MemoryStore(), _lookup(http)
    quote = kit.tdx_quote()
    await lookup.resolve(store, quote, {}, NOW)
    vendor.down = True
    later = NOW + 31 * DAY
    with pytest.raises(CollateralUnavailable, match=r"expired at its nextUpdate .* HTTP 503"):
        await lookup.resolve(store, quote, {}, later)
    # Offline, the stale documents reach the verifier, which reports them precisely.
    offline = await _lookup(http, fetch=False).resolve(store, quote, {}, later)
    with pytest.raises(CollateralExpired, match=r"nextUpdate"):
        verify_quote(quote, offline, now=later, tee=Tee.TDX, extra_roots=kit.extra_roots())


async def test_fetching_off_and_nothing_stored(kit: IntelKit, http: httpx.AsyncClient) -> None:
    with pytest.raises(CollateralUnavailable, match=r"tdx tcb_info 5a5a5a000000 is not stored"):
        await _lookup(http, fetch=False).resolve(MemoryStore(), kit.tdx_quote(), {}, NOW)


async def test_malformed_quote(kit: IntelKit, http: httpx.AsyncClient) -> None:
    with pytest.raises(MalformedEvidence):
        await _lookup(http).resolve(MemoryStore(), kit.tdx_quote()[:100], {}, NOW)


async def test_real_tdx_quote_from_a_fake_pcs_serving_real_collateral() -> None:
    """trustee's debug TD (FMSPC 50806f000000) with go-tdx-guest's June-2023 collateral,
    served as Intel's PCS serves it, at the manifest's instant."""
    requests: list[httpx.Request] = []
    quote = DEBUG_TD_QUOTE.read_bytes()
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake_pcs(requests))) as http:
        lookup = DcapLookup(IntelPcsClient(http), Fetcher(enabled=True))
        store = MemoryStore()
        found = await lookup.resolve(store, quote, {}, JUNE_2023)
        again = await lookup.resolve(store, quote, {}, JUNE_2023)
    assert len(requests) == 4
    assert found == again
    expected = spr_collateral()
    assert {name: found[name] for name in expected} == expected
    result = verify_quote(quote, found, now=JUNE_2023, tee=Tee.TDX)
    assert result.appraisal.status is TcbStatus.UP_TO_DATE


_SNP_KIT = SnpKit.generate(rsa_bits=2048)
_INTEL_KIT = IntelKit.create(now=NOW)
_EVIDENCE = {
    "snp": _SNP_KIT.sign(_SNP_KIT.report()),
    "tdx": _INTEL_KIT.tdx_quote(),
    "sgx": _INTEL_KIT.sgx_quote(),
}


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(sorted(_EVIDENCE)),
    st.integers(0, 10_000),
    st.integers(0, 255),
    st.one_of(st.none(), st.integers(0, 10_000)),
)
def test_corrupted_evidence_raises_only_evidence_errors(
    which: str, position: int, value: int, cut: int | None
) -> None:
    """The lookups read evidence before the verifier does: a corrupted report or quote must
    end in our errors (or in a lookup), never in anything else."""
    data = bytearray(_EVIDENCE[which])
    data[position % len(data)] = value
    evidence = bytes(data[:cut] if cut is not None else data)
    vendor = FakeVendor()

    async def run() -> None:
        async with vendor.client() as http:
            lookup = (
                SnpLookup(AmdKdsClient(http, PCS), Fetcher(enabled=True))
                if which == "snp"
                else _lookup(http)
            )
            with contextlib.suppress(EvidenceError):
                await lookup.resolve(MemoryStore(), evidence, {}, NOW)

    asyncio.run(run())
