"""Every branch of the SNP verifier, driven by the synthetic kit (a fake AMD chain)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Literal

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from broker.errors import (
    CertificateExpired,
    CertificateRevoked,
    ChainInvalid,
    CollateralExpired,
    CollateralInvalid,
    CollateralUnavailable,
    SignatureInvalid,
    TcbMismatch,
    UnsupportedEvidence,
    VcekChipMismatch,
)
from broker.evidence.claims import Claims
from broker.evidence.snp import verify
from broker.evidence.snp.abi import Cpuid, SignerInfo, SigningKey, TcbParts
from broker.evidence.snp.endorsement import OID_HWID, OID_PRODUCT_NAME, spl_oid
from broker.evidence.snp.verify import verify_report
from broker.evidence.trust import LinkCache, load_certificates
from broker.simulate.snp import SnpKit
from tests.unit.snp.conftest import SNP

NOW = datetime(2025, 3, 1, tzinfo=UTC)


def _der(kit: SnpKit, cert: x509.Certificate) -> bytes:
    return kit.collateral(cert)["vcek"]


def _verify(kit: SnpKit, evidence: bytes, **collateral: bytes) -> Claims:
    merged = {**kit.collateral(), **collateral}
    return verify(evidence, merged, now=NOW, extra_roots=[kit.root()])


def test_kit_evidence_verifies_only_through_an_insecure_root(kit: SnpKit) -> None:
    evidence = kit.sign(kit.report(report_data=b"\x07" * 64, measurement=b"\x42" * 48))
    claims = verify(evidence, kit.collateral(), now=NOW, extra_roots=[kit.root()])
    assert claims.signer.root == "insecure-test-snp-kit"
    assert claims.signer.product == "Milan"
    assert claims.report_data == b"\x07" * 64
    assert claims.lookup("measurement") == "42" * 48
    assert claims.lookup("cpuid.family") == 0x19
    with pytest.raises(ChainInvalid, match=r"cert_chain root 'ARK-Milan' .* is not the pinned ARK"):
        verify(evidence, kit.collateral(), now=NOW)


def test_without_cert_chain_the_pinned_amd_ask_does_not_match(kit: SnpKit) -> None:
    evidence = kit.sign(kit.report())
    collateral = {"vcek": kit.collateral()["vcek"]}
    with pytest.raises(ChainInvalid):
        verify(evidence, collateral, now=NOW, extra_roots=[kit.root()])


def test_a_real_ark_does_not_anchor_the_kit_ask(kit: SnpKit) -> None:
    real = (SNP / "amd-kds-cert-chains/ask_ark_milan.pem").read_bytes()
    ark_only = real[real.index(b"-----BEGIN", 10) :]
    evidence = kit.sign(kit.report())
    chain = serialization.Encoding.PEM
    with pytest.raises(
        ChainInvalid, match=r"ASK certificate 'SEV-Milan' .* does not chain to a pinned root"
    ):
        verify(
            evidence,
            {
                "vcek": kit.collateral()["vcek"],
                "cert_chain": kit.ask.public_bytes(chain) + ark_only,
            },
            now=NOW,
        )


@pytest.mark.parametrize(
    ("window", "match"),
    [
        ((datetime(2025, 4, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)), "not valid before"),
        ((datetime(2024, 1, 1, tzinfo=UTC), datetime(2025, 2, 1, tzinfo=UTC)), "expired at"),
    ],
)
def test_vcek_outside_its_validity(
    kit: SnpKit, window: tuple[datetime, datetime], match: str
) -> None:
    key, vcek = kit.issue_vcek(not_before=window[0], not_after=window[1])
    evidence = kit.sign(kit.report(), key)
    with pytest.raises(CertificateExpired, match=match):
        _verify(kit, evidence, vcek=_der(kit, vcek))


def test_wrong_chip_id(kit: SnpKit) -> None:
    evidence = kit.sign(kit.report(chip_id=b"\x01" * 64))
    with pytest.raises(VcekChipMismatch) as caught:
        _verify(kit, evidence)
    assert caught.value.type == "vcek-chip-mismatch"  # not tcb-mismatch: it says what is wrong
    assert caught.value.detail.startswith("the VCEK is another chip's: its hwID ")
    assert f"is not this report's CHIP_ID {'01' * 64}; use the VCEK of the chip" in (
        caught.value.detail
    )


@pytest.mark.parametrize(
    ("tcb", "match"),
    [
        (TcbParts(5, 0, 23, 213), r"REPORTED_TCB.BOOT_LOADER 5 != VCEK blSPL 4"),
        (TcbParts(4, 1, 23, 213), r"REPORTED_TCB.TEE 1 != VCEK teeSPL 0"),
        (TcbParts(4, 0, 22, 213), r"REPORTED_TCB.SNP 22 != VCEK snpSPL 23"),
        (TcbParts(4, 0, 23, 214), r"REPORTED_TCB.MICROCODE 214 != VCEK ucodeSPL 213"),
    ],
)
def test_tcb_mismatch(kit: SnpKit, tcb: TcbParts, match: str) -> None:
    with pytest.raises(TcbMismatch, match=match):
        _verify(kit, kit.sign(kit.report(tcb=tcb)))


def test_reserved_tcb_byte_must_match_the_vcek(kit: SnpKit) -> None:
    report = kit.report()
    raw = bytearray(report.reported_tcb.raw)
    raw[3] = 1
    tweaked = dataclasses.replace(report, reported_tcb=type(report.reported_tcb)(bytes(raw)))
    with pytest.raises(TcbMismatch, match=r"REPORTED_TCB.byte 3 \(reserved\) 1 != VCEK spl5 0"):
        _verify(kit, kit.sign(tweaked))


def test_only_reported_tcb_selects_the_vcek(kit: SnpKit) -> None:
    newer = kit.report(tcb=TcbParts(9, 9, 99, 250))
    report = dataclasses.replace(newer, reported_tcb=kit.report().reported_tcb)
    claims = _verify(kit, kit.sign(report))
    assert claims.lookup("current_tcb.snp") == 99
    assert claims.lookup("reported_tcb.snp") == 23


def test_hwid_of_the_wrong_size(kit: SnpKit) -> None:
    key, vcek = kit.issue_vcek(hwid=kit.chip_id[:8])
    with pytest.raises(TcbMismatch, match=r"VCEK hwID is 8 bytes; Milan uses 64"):
        _verify(kit, kit.sign(kit.report(), key), vcek=_der(kit, vcek))


@pytest.mark.parametrize(
    ("omitted", "match"),
    [
        (spl_oid(1), r"VCEK has no blSPL extension \(1.3.6.1.4.1.3704.1.3.1\) to endorse "),
        (spl_oid(8), r"VCEK has no ucodeSPL extension"),
        (OID_HWID, r"VCEK has no hwID extension"),
    ],
)
def test_missing_endorsement_extensions(
    kit: SnpKit, omitted: x509.ObjectIdentifier, match: str
) -> None:
    key, vcek = kit.issue_vcek(omit=[omitted])
    with pytest.raises(TcbMismatch, match=match):
        _verify(kit, kit.sign(kit.report(), key), vcek=_der(kit, vcek))


def test_absent_reserved_spl_endorses_zero(kit: SnpKit) -> None:
    key, vcek = kit.issue_vcek(omit=[spl_oid(4), spl_oid(7)])
    assert _verify(kit, kit.sign(kit.report(), key), vcek=_der(kit, vcek))


def test_v2_report_without_any_product_needs_one_supplied(kit: SnpKit) -> None:
    key, vcek = kit.issue_vcek(omit=[OID_PRODUCT_NAME])
    evidence = kit.sign(kit.report(version=2), key)
    with pytest.raises(CollateralUnavailable, match=r"version 2 carries no CPUID .* productName"):
        _verify(kit, evidence, vcek=_der(kit, vcek))
    claims = _verify(kit, evidence, vcek=_der(kit, vcek), product=b"Milan")
    assert claims.signer.product == "Milan"


def test_masked_chip_id_verifies_with_a_warning(kit: SnpKit) -> None:
    report = kit.report(chip_id=bytes(64), signer_info=SignerInfo(mask_chip_key=True))
    claims = _verify(kit, kit.sign(report))
    assert claims.warnings == (
        "CHIP_ID is masked (SIGNER_INFO.MASK_CHIP_KEY): VCEK hwID not compared",
    )


def test_signature_by_another_key(kit: SnpKit) -> None:
    evidence = kit.sign(kit.report(), ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(SignatureInvalid, match=r"does not verify with the VCEK"):
        _verify(kit, evidence)


def test_unsigned_report(kit: SnpKit) -> None:
    report = kit.report(signer_info=SignerInfo(SigningKey.NONE))
    with pytest.raises(SignatureInvalid, match=r"SIGNING_KEY 7: the report is not signed"):
        _verify(kit, report.to_bytes())


def test_missing_vcek_is_collateral_unavailable(kit: SnpKit) -> None:
    with pytest.raises(CollateralUnavailable, match=r"signed by a VCEK .* no 'vcek'"):
        verify(kit.sign(kit.report()), {}, now=NOW, extra_roots=[kit.root()])


def test_vlek_signed_report(kit: SnpKit) -> None:
    key, vlek = kit.issue_vcek(kind="vlek")
    report = kit.report(chip_id=bytes(64), signer_info=SignerInfo(SigningKey.VLEK))
    evidence = kit.sign(report, key)
    claims = _verify(kit, evidence, vcek=_der(kit, vlek))
    assert claims.signer.key == "vlek"
    claims = _verify(kit, evidence, vlek=_der(kit, vlek), vcek=b"ignored for a VLEK report")
    assert claims.lookup("signer_info.signing_key") == "vlek"
    with pytest.raises(ChainInvalid, match=r"'vcek' certificate is 'SEV-VLEK', not 'SEV-VCEK'"):
        _verify(kit, kit.sign(kit.report(), key), vcek=_der(kit, vlek))


def test_endorsement_key_must_be_p384(kit: SnpKit) -> None:
    _, vcek = kit.issue_vcek(key=ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(ChainInvalid, match=r"not an EC P-384 key"):
        _verify(kit, kit.sign(kit.report()), vcek=_der(kit, vcek))


def test_vcek_from_another_chain(kit: SnpKit) -> None:
    other = dataclasses.replace(kit, ask_key=kit.ark_key)  # same names, wrong signing key
    key, vcek = other.issue_vcek()
    with pytest.raises(ChainInvalid, match=r"'SEV-VCEK' is not signed by 'SEV-Milan'"):
        _verify(kit, kit.sign(kit.report(), key), vcek=_der(kit, vcek))


# --- CRLs -------------------------------------------------------------------------------------


def test_revoked_vcek(kit: SnpKit) -> None:
    key, vcek = kit.issue_vcek(serial=0x5EC)
    evidence = kit.sign(kit.report(), key)
    crl = kit.crl([vcek], issuer="ask")
    with pytest.raises(CertificateRevoked, match=r"VCEK certificate 'SEV-VCEK' serial 0x5ec"):
        _verify(kit, evidence, vcek=_der(kit, vcek), crl=crl)


def test_revoked_ask(kit: SnpKit) -> None:
    crl = kit.crl([kit.ask], issuer="ark")
    with pytest.raises(CertificateRevoked, match=r"ASK certificate 'SEV-Milan' serial 0x10001"):
        _verify(kit, kit.sign(kit.report()), crl=crl)


def test_crls_listing_others_pass_and_pem_bundles_are_read(kit: SnpKit) -> None:
    _, other = kit.issue_vcek()
    crl_ark = kit.crl([], issuer="ark")
    crl_ask = kit.crl([other], issuer="ask")
    pem = b"".join(
        x509.load_der_x509_crl(der).public_bytes(serialization.Encoding.PEM)
        for der in (crl_ark, crl_ask)
    )
    claims = _verify(kit, kit.sign(kit.report()), crl=pem)
    assert claims.signer.root == "insecure-test-snp-kit"


def test_stale_crl(kit: SnpKit) -> None:
    crl = kit.crl(
        [],
        issuer="ark",
        this_update=datetime(2024, 1, 1, tzinfo=UTC),
        next_update=datetime(2024, 2, 1, tzinfo=UTC),
    )
    with pytest.raises(
        CollateralExpired, match=r"^CRL for ASK nextUpdate 2024-02-01T00:00:00Z is before now"
    ):
        _verify(kit, kit.sign(kit.report()), crl=crl)


def test_crl_of_another_issuer(kit: SnpKit, turin_kit: SnpKit) -> None:
    with pytest.raises(CollateralInvalid, match=r"CRL issuer 'ARK-Turin' is neither"):
        _verify(kit, kit.sign(kit.report()), crl=turin_kit.crl([], issuer="ark"))


def test_crl_with_a_forged_signature(kit: SnpKit) -> None:
    forger = dataclasses.replace(kit, ark_key=kit.ask_key)
    # A badly signed CRL is badly signed collateral, in SNP as in DCAP (docs/snp.md).
    with pytest.raises(CollateralInvalid, match=r"CRL for ASK is not signed by 'ARK-Milan'"):
        _verify(kit, kit.sign(kit.report()), crl=forger.crl([], issuer="ark"))


def test_crl_of_the_ask_with_a_forged_signature(kit: SnpKit) -> None:
    forger = dataclasses.replace(kit, ask_key=kit.ark_key)
    with pytest.raises(CollateralInvalid, match=r"^CRL for VCEK is not signed by 'SEV-Milan'"):
        _verify(kit, kit.sign(kit.report()), crl=forger.crl([], issuer="ask"))


@pytest.mark.parametrize("issuer", ["ark", "ask"])
def test_crl_without_next_update_is_invalid(kit: SnpKit, issuer: Literal["ark", "ask"]) -> None:
    # Without nextUpdate a CRL would be honoured forever (RFC 5280 §5.1.2.5 requires one).
    role = {"ark": "ASK", "ask": "VCEK"}[issuer]
    crl = kit.crl([], issuer=issuer, next_update=None)
    with pytest.raises(CollateralInvalid, match=rf"^CRL for {role} has no nextUpdate$"):
        _verify(kit, kit.sign(kit.report()), crl=crl)


def test_crl_issued_after_now_is_not_current(kit: SnpKit) -> None:
    crl = kit.crl([], issuer="ark", this_update=datetime(2025, 3, 2, tzinfo=UTC))
    with pytest.raises(
        CollateralExpired,
        match=r"^CRL for ASK thisUpdate 2025-03-02T00:00:00Z is after now 2025-03-01T00:00:00Z$",
    ):
        _verify(kit, kit.sign(kit.report()), crl=crl)


def test_a_cached_crl_signature_does_not_excuse_its_window(kit: SnpKit) -> None:
    links = LinkCache()
    crl = kit.crl([], issuer="ark", next_update=datetime(2025, 4, 1, tzinfo=UTC))
    collateral = {**kit.collateral(), "crl": crl}
    evidence = kit.sign(kit.report())
    verify_report(evidence, collateral, now=NOW, extra_roots=[kit.root()], links=links)
    later = datetime(2025, 4, 2, tzinfo=UTC)
    with pytest.raises(CollateralExpired, match=r"^CRL for ASK nextUpdate 2025-04-01T00:00:00Z"):
        verify_report(evidence, collateral, now=later, extra_roots=[kit.root()], links=links)


def test_crl_that_does_not_parse(kit: SnpKit) -> None:
    with pytest.raises(CollateralInvalid, match=r"^crl: DER CRL does not parse"):
        _verify(kit, kit.sign(kit.report()), crl=b"not a CRL")


# --- product ----------------------------------------------------------------------------------


def test_v2_report_takes_the_product_from_the_vcek(kit: SnpKit) -> None:
    claims = _verify(kit, kit.sign(kit.report(version=2)))
    assert claims.signer.product == "Milan"
    assert claims.lookup("cpuid") is None


def test_cpuid_and_vcek_product_must_agree(kit: SnpKit) -> None:
    key, vcek = kit.issue_vcek(product_name="Genoa-B1")
    with pytest.raises(TcbMismatch, match=r"0x19/0x01 \(Milan\) != VCEK productName 'Genoa-B1'"):
        _verify(kit, kit.sign(kit.report(), key), vcek=_der(kit, vcek))


def test_unknown_cpuid_is_unsupported(kit: SnpKit) -> None:
    report = kit.report(cpuid=Cpuid(family=0x17, model=0x31, stepping=0))
    with pytest.raises(UnsupportedEvidence, match=r"CPUID_FAM_ID 0x17 / CPUID_MOD_ID 0x31"):
        _verify(kit, kit.sign(report))


def test_unknown_vcek_product_name(kit: SnpKit) -> None:
    key, vcek = kit.issue_vcek(product_name="Rome-B0")
    with pytest.raises(CollateralInvalid, match=r"productName 'Rome-B0' is not Milan"):
        _verify(kit, kit.sign(kit.report(), key), vcek=_der(kit, vcek))


@pytest.mark.parametrize(
    ("product", "match"),
    [(b"Genoa", r"product collateral 'Genoa' != Milan"), (b"Rome", r"product 'Rome' is not")],
)
def test_supplied_product_must_agree(kit: SnpKit, product: bytes, match: str) -> None:
    assert _verify(kit, kit.sign(kit.report()), product=b"milan\n")
    with pytest.raises(CollateralInvalid, match=match):
        _verify(kit, kit.sign(kit.report()), product=product)


# --- Turin --------------------------------------------------------------------------------------


def test_turin_kit_verifies_with_fmc_and_short_hwid(turin_kit: SnpKit) -> None:
    claims = _verify(turin_kit, turin_kit.sign(turin_kit.report(version=5)))
    assert claims.signer.product == "Turin"
    assert claims.lookup("reported_tcb") == {
        "bootloader": 1,
        "tee": 1,
        "snp": 3,
        "microcode": 72,
        "fmc": 1,
    }
    assert claims.lookup("launch_mit_vector") == 0


def test_turin_fmc_mismatch(turin_kit: SnpKit) -> None:
    report = turin_kit.report(tcb=TcbParts(1, 1, 3, 72, fmc=2))
    with pytest.raises(TcbMismatch, match=r"REPORTED_TCB.FMC 2 != VCEK fmcSPL 1"):
        _verify(turin_kit, turin_kit.sign(report))


def test_turin_compares_the_first_8_bytes_of_chip_id(turin_kit: SnpKit) -> None:
    chip = bytearray(turin_kit.chip_id)
    chip[7] ^= 1
    with pytest.raises(
        VcekChipMismatch, match=r"its hwID [0-9a-f]{16} is not this report's CHIP_ID [0-9a-f]{16};"
    ):
        _verify(turin_kit, turin_kit.sign(turin_kit.report(chip_id=bytes(chip))))


# --- caching ----------------------------------------------------------------------------------


def test_repeat_verification_reuses_the_verified_links(kit: SnpKit) -> None:
    links = LinkCache()
    collateral = {**kit.collateral(), "crl": kit.crl([], issuer="ark")}
    evidence = kit.sign(kit.report())
    for _ in range(3):
        verify_report(evidence, collateral, now=NOW, extra_roots=[kit.root()], links=links)
        assert len(links) == 3  # VCEK->ASK, ASK->ARK, CRL<-ARK


_TRIMMABLE = b"\x00 \t\n\r\x0b\x0c"


def test_der_certificates_and_crls_ending_in_nul_or_space_load(kit: SnpKit) -> None:
    # DER ends with the last byte of its signature, which may be anything; the tolerance for
    # PEM text (NUL terminators, blank lines) must never trim DER. PSS signatures are salted,
    # so re-signing until the last byte is one of those takes about 40 tries.
    for serial in range(1, 4000):
        key, vcek = kit.issue_vcek(serial=serial)
        if _der(kit, vcek)[-1] in _TRIMMABLE:
            break
    for _ in range(4000):
        crl = kit.crl([], issuer="ark")
        if crl[-1] in _TRIMMABLE:
            break
    assert load_certificates(_der(kit, vcek)) == [vcek]
    claims = _verify(kit, kit.sign(kit.report(), key), vcek=_der(kit, vcek), crl=crl)
    assert claims.signer.product == "Milan"


@pytest.mark.parametrize(
    ("content", "found"),
    [
        (b"\x01" + bytes(2000), "INTEGER of 2001 bytes"),  # 4,800 digits: cannot be printed
        (b"\xff" * 2000, "INTEGER of 2000 bytes"),  # negative, as long
        (b"\x00" * 8 + b"\x05", "INTEGER of 9 bytes"),
    ],
)
def test_over_long_spl_integers_are_malformed(kit: SnpKit, content: bytes, found: str) -> None:
    """An SPL must be endorsed by a small INTEGER; a long one is refused before it is
    compared with REPORTED_TCB or printed in a message."""
    length = len(content).to_bytes(2, "big")
    extensions = [
        (OID_PRODUCT_NAME, b"\x16\x08Milan-B0"),
        (spl_oid(3), b"\x02\x82" + length + content),
        (OID_HWID, kit.chip_id),
    ]
    vcek = kit.issue_endorsement(extensions)
    with pytest.raises(CollateralInvalid, match=f"^vcek: snpSPL: {found}; at most 8 expected"):
        _verify(kit, kit.sign(kit.report()), vcek=_der(kit, vcek))
