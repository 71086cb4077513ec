"""Simulated guests: evidence from the synthetic kits verifies, binds what it is given, and
carries the collateral the broker needs; ``keybroker guest fetch --simulate`` picks them."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from keybroker_guest.evidence import TEES, BindingInput, EvidenceSource, default_kit, source_for
from keybroker_guest.vtpm import VtpmGuest

from broker.evidence.claims import Claims, Tee
from broker.evidence.nitro.binding import check_binding
from broker.evidence.registry import verifier_for
from broker.evidence.trust import TrustedRoot
from broker.simulate.guests import (
    DEMO_MR_ENCLAVE,
    DEMO_MR_SIGNER,
    DEMO_MR_TD,
    SIMULATED,
    SimulatedNitro,
    SimulatedSgx,
    SimulatedSnp,
    SimulatedTdx,
    SimulatedVtpm,
)
from broker.simulate.intel import IntelKit
from broker.simulate.nitro import FakeNitroAuthority

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
REPORT_DATA = hashlib.sha512(b"nonce and key").digest()
NONCE = bytes(range(32))
PUBLIC_KEY = (
    ec.generate_private_key(ec.SECP384R1())
    .public_key()
    .public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
)
BINDING = BindingInput(REPORT_DATA, NONCE, PUBLIC_KEY)


def clock() -> datetime:
    return NOW


@pytest.fixture(scope="module")
def intel_kit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple[TrustedRoot, ...]]:
    kit = IntelKit.create(now=NOW)
    folder = tmp_path_factory.mktemp("intel")
    kit.save(folder)
    return folder, kit.extra_roots()


@pytest.fixture(scope="module")
def nitro_authority(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, tuple[TrustedRoot, ...]]:
    authority = FakeNitroAuthority.generate()
    folder = tmp_path_factory.mktemp("nitro") / "authority"
    authority.save(folder)
    return folder, (authority.trusted_root(),)


def produce_and_verify(source: EvidenceSource, roots: tuple[TrustedRoot, ...]) -> Claims:
    evidence, collateral = source.produce(BINDING)
    return verifier_for(source.tee).verify(evidence, collateral, now=NOW, extra_roots=roots)


def test_simulated_tdx_quote_binds_report_data_and_ships_its_collateral(
    intel_kit: tuple[Path, tuple[TrustedRoot, ...]],
) -> None:
    folder, roots = intel_kit
    evidence, collateral = SimulatedTdx(folder, clock=clock).produce(BINDING)
    assert set(collateral) == {
        "tcb_info",
        "qe_identity",
        "pck_crl",
        "root_crl",
        "tcb_signing_chain",
    }
    claims = verifier_for(Tee.TDX).verify(evidence, collateral, now=NOW, extra_roots=roots)
    assert claims.report_data == REPORT_DATA
    assert claims.signer.root == "insecure-test-intel-sim"
    assert claims.debug is False
    assert claims.lookup("mr_td") == DEMO_MR_TD.hex()
    assert claims.lookup("td_attributes.sept_ve_disable") is True
    assert claims.lookup("tcb_status") == "UpToDate"
    # The kit issues TCB Info and QE Identity one day before the instant it is given.
    assert claims.collateral_time == NOW - timedelta(days=1)


def test_simulated_tdx_measurements_and_debug(
    intel_kit: tuple[Path, tuple[TrustedRoot, ...]],
) -> None:
    folder, roots = intel_kit
    rtmrs = [bytes([index]) * 48 for index in range(4)]
    source = SimulatedTdx(folder, mr_td=b"\x7d" * 48, rtmrs=rtmrs, debug=True, clock=clock)
    claims = produce_and_verify(source, roots)
    assert claims.debug is True
    assert claims.lookup("td_attributes.debug") is True
    assert claims.lookup("td_attributes.sept_ve_disable") is True
    assert claims.lookup("mr_td") == "7d" * 48
    assert claims.lookup("rtmr") == tuple(rtmr.hex() for rtmr in rtmrs)


def test_simulated_sgx_quote_binds_report_data(
    intel_kit: tuple[Path, tuple[TrustedRoot, ...]],
) -> None:
    folder, roots = intel_kit
    claims = produce_and_verify(SimulatedSgx(folder, clock=clock), roots)
    assert claims.tee is Tee.SGX
    assert claims.report_data == REPORT_DATA
    assert claims.debug is False
    assert (claims.lookup("mr_enclave"), claims.lookup("mr_signer")) == (
        DEMO_MR_ENCLAVE.hex(),
        DEMO_MR_SIGNER.hex(),
    )
    assert (claims.lookup("isv_prod_id"), claims.lookup("isv_svn")) == (1, 1)
    assert claims.lookup("attributes.mode64bit") is True


def test_simulated_sgx_debug_enclave(intel_kit: tuple[Path, tuple[TrustedRoot, ...]]) -> None:
    folder, roots = intel_kit
    claims = produce_and_verify(SimulatedSgx(folder, debug=True, isv_svn=3, clock=clock), roots)
    assert claims.debug is True
    assert claims.lookup("attributes.debug") is True
    assert claims.lookup("isv_svn") == 3


def test_collateral_is_issued_at_the_clock_so_it_is_fresh_when_verified(
    intel_kit: tuple[Path, tuple[TrustedRoot, ...]],
) -> None:
    """A kit created long ago still yields evidence the broker accepts today."""
    folder, roots = intel_kit
    later = datetime(2027, 6, 1, tzinfo=UTC)
    evidence, collateral = SimulatedSgx(folder, clock=lambda: later).produce(BINDING)
    claims = verifier_for(Tee.SGX).verify(evidence, collateral, now=later, extra_roots=roots)
    assert claims.collateral_time == later - timedelta(days=1)


def test_simulated_nitro_document_binds_nonce_and_public_key(
    nitro_authority: tuple[Path, tuple[TrustedRoot, ...]],
) -> None:
    folder, roots = nitro_authority
    claims = produce_and_verify(SimulatedNitro(folder, clock=clock), roots)
    check_binding(claims, NONCE, PUBLIC_KEY)
    assert claims.debug is False
    assert claims.evidence_time == NOW


def test_simulated_nitro_debug_enclave_reports_zero_pcrs(
    nitro_authority: tuple[Path, tuple[TrustedRoot, ...]],
) -> None:
    folder, roots = nitro_authority
    claims = produce_and_verify(SimulatedNitro(folder, debug=True, clock=clock), roots)
    assert claims.debug is True
    pcrs = claims.lookup("pcrs")
    assert [pcrs[str(index)] for index in (0, 1, 2, 8)] == ["00" * 48] * 4


@pytest.mark.parametrize(
    ("tee", "kind"),
    [
        ("snp", SimulatedSnp),
        ("tdx", SimulatedTdx),
        ("sgx", SimulatedSgx),
        ("nitro", SimulatedNitro),
        ("snp-vtpm", SimulatedVtpm),
        ("tdx-vtpm", SimulatedVtpm),
        ("tpm", SimulatedVtpm),
    ],
)
def test_guest_fetch_simulate_picks_the_source_of_each_tee(
    tmp_path: Path, tee: str, kind: type
) -> None:
    source = source_for(tee, simulate=True, kit=tmp_path)
    assert isinstance(source, kind)
    assert source.tee == tee
    assert set(SIMULATED) == set(TEES)


@pytest.mark.parametrize(("tee", "kit"), [("snp-vtpm", "snp"), ("tdx-vtpm", "tdx"), ("tpm", "tpm")])
def test_a_simulated_vtpm_is_provisioned_from_its_hardware_kit(
    tmp_path: Path, tee: str, kit: str
) -> None:
    """The paravisor's report is signed by the SNP or Intel kit of ``<state>/demo``."""
    (tmp_path / "demo" / kit).mkdir(parents=True)
    source = source_for(tee, simulate=True, kit=default_kit(tee, tmp_path))
    assert isinstance(source, SimulatedVtpm)
    assert (source.tee, source.kit_dir) == (tee, tmp_path / "demo" / kit)


@pytest.mark.parametrize("tee", ["snp-vtpm", "tdx-vtpm", "tpm"])
def test_a_real_vtpm_guest_reads_its_vtpm(tee: str) -> None:
    source = source_for(tee)
    assert isinstance(source, VtpmGuest)
    assert (source.tee, source.tools.tcti) == (tee, None)
    assert source.td_quote_url == "http://169.254.169.254/acc/tdquote"
    elsewhere = source_for(tee, td_quote_url="http://quotes.test/acc/tdquote")
    assert isinstance(elsewhere, VtpmGuest)
    assert elsewhere.td_quote_url == "http://quotes.test/acc/tdquote"
