"""Lookup keys: what a report asks for is where an imported certificate is stored."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from broker.collateral.keys import (
    ItemKey,
    amd_product_of_name,
    endorsement_ref,
    report_endorsements,
)
from broker.errors import CollateralInvalid, CollateralUnavailable
from broker.evidence.snp.abi import SignerInfo, SigningKey, TcbParts, parse_report
from broker.evidence.snp.endorsement import OID_HWID, OID_PRODUCT_NAME, load_endorsement, spl_oid
from broker.evidence.snp.products import Product
from broker.simulate.snp import SnpKit

SNP = Path(__file__).parents[2] / "vectors" / "snp"

# (report, its endorsement) of every real SNP vector with both.
REAL = [
    ("trustee-milan-vcek/test-report.bin", "trustee-milan-vcek/test-vcek.der"),
    ("go-sev-guest-milan-v2/attestation.bin", "go-sev-guest-milan-v2/vcek.der"),
    ("virtee-sev-milan-v2/report_milan.bin", "virtee-sev-milan-v2/vcek_milan.der"),
    ("trustee-milan-vlek/test-vlek-report.bin", "trustee-milan-vlek/test-vlek.der"),
]


@pytest.fixture(scope="module")
def turin_kit() -> SnpKit:
    return SnpKit.generate(Product.TURIN, rsa_bits=2048)


@pytest.mark.parametrize(("report_file", "cert_file"), REAL)
def test_real_report_looks_up_where_its_certificate_is_stored(
    report_file: str, cert_file: str
) -> None:
    report = parse_report((SNP / report_file).read_bytes())
    stored = endorsement_ref(load_endorsement((SNP / cert_file).read_bytes()))
    candidates = report_endorsements(report)
    assert stored in candidates
    assert stored.key in [ref.key for ref in candidates]
    assert stored.product is Product.MILAN


def test_v2_report_candidates_span_products_unless_the_product_is_given() -> None:
    report = parse_report((SNP / REAL[0][0]).read_bytes())
    assert report.cpuid is None
    assert [ref.product for ref in report_endorsements(report)] == list(Product)
    (only,) = report_endorsements(report, b"Milan\n")
    assert only.product is Product.MILAN
    # An unknown hint is ignored rather than trusted.
    assert len(report_endorsements(report, b"Rome")) == 3


def test_vcek_key_is_the_kds_request() -> None:
    report = parse_report((SNP / "trustee-milan-vcek/test-report.bin").read_bytes())
    (ref,) = report_endorsements(report, b"Milan")
    assert ref.key == ItemKey(
        "snp",
        "vcek",
        f"Milan/{report.chip_id.hex()}?blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115",
    )
    assert ref.cert_chain_key == ItemKey("snp", "cert_chain", "Milan/vcek")
    assert ref.crl_key == ItemKey("snp", "crl", "Milan")


def test_vlek_key_has_no_chip() -> None:
    report = parse_report((SNP / "trustee-milan-vlek/test-vlek-report.bin").read_bytes())
    (ref,) = report_endorsements(report)
    assert (ref.kind, ref.hwid) == ("vlek", None)
    assert ref.key == ItemKey("snp", "vlek", "Milan?blSPL=4&teeSPL=0&snpSPL=24&ucodeSPL=217")
    assert ref.cert_chain_key.lookup_key == "Milan/vlek"


def test_real_turin_vcek_key() -> None:
    ref = endorsement_ref(
        load_endorsement((SNP / "virtee-sev-turin-vcek/vcek_turin.der").read_bytes())
    )
    assert ref.key.lookup_key == (
        "Turin/1e550a8ee5cf9f4d?blSPL=0&teeSPL=0&snpSPL=0&ucodeSPL=9&fmcSPL=0"
    )


def test_turin_kit_report_and_vcek_agree(turin_kit: SnpKit) -> None:
    (from_report,) = report_endorsements(turin_kit.report())
    from_cert = endorsement_ref(load_endorsement(turin_kit.vcek.public_bytes(Encoding.PEM)))
    assert from_report == from_cert
    assert from_cert.hwid == turin_kit.chip_id[:8]
    assert from_cert.tcb == TcbParts(bootloader=1, tee=1, snp=3, microcode=72, fmc=1)


def test_reports_without_a_nameable_endorsement(turin_kit: SnpKit) -> None:
    with pytest.raises(CollateralUnavailable, match=r"not signed"):
        report_endorsements(turin_kit.report(signer_info=SignerInfo(SigningKey.NONE)))
    with pytest.raises(CollateralUnavailable, match=r"CHIP_ID is masked"):
        report_endorsements(turin_kit.report(signer_info=SignerInfo(mask_chip_key=True)))
    with pytest.raises(CollateralUnavailable, match=r"CHIP_ID is masked"):
        report_endorsements(turin_kit.report(chip_id=bytes(64)))


@pytest.mark.parametrize(
    ("omit", "message"),
    [
        (OID_HWID, r"lacks the hwID extension"),
        (spl_oid(3), r"lacks SPL extension 1\.3\.6\.1\.4\.1\.3704\.1\.3\.3"),
    ],
)
def test_certificates_missing_key_extensions_are_refused(
    turin_kit: SnpKit, omit: x509.ObjectIdentifier, message: str
) -> None:
    _, cert = turin_kit.issue_vcek(omit=[omit])
    with pytest.raises(CollateralInvalid, match=message):
        endorsement_ref(load_endorsement(cert.public_bytes(Encoding.DER)))


def test_product_falls_back_to_the_issuer_name(turin_kit: SnpKit) -> None:
    _, cert = turin_kit.issue_vcek(omit=[OID_PRODUCT_NAME])
    ref = endorsement_ref(load_endorsement(cert.public_bytes(Encoding.DER)))
    assert ref.product is Product.TURIN  # issuer "SEV-Turin"


def test_product_from_amd_ca_names() -> None:
    assert amd_product_of_name("ARK-Genoa") is Product.GENOA
    assert amd_product_of_name("SEV-VLEK-Turin") is Product.TURIN
    assert amd_product_of_name("SEV-VCEK") is None
    assert amd_product_of_name("Intel SGX Root CA") is None
