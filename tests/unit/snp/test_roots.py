"""The pinned AMD certificates are exactly the ones AMD KDS publishes, by fingerprint."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from broker.evidence.snp.products import Product
from broker.evidence.snp.roots import ARKS, INTERMEDIATES, ark, intermediate
from broker.evidence.trust import fingerprint, load_certificates
from tests.unit.snp.conftest import SNP

# Written out here on purpose: a change to a pin must change this test too.
EXPECTED_SHA256 = {
    "amd-ark-milan": "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
    "amd-ark-genoa": "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
    "amd-ark-turin": "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
    "amd-ask-milan": "67d303bd3905fd38db8b20e0793699870e7fa612eaad5dec358293fd8c0bac1b",
    "amd-asvk-milan": "c5e081f59b7efab1fe2f8b505e159704e72f29cab7ef7cf628a05a42439082f5",
    "amd-ask-genoa": "5464738c1546aed5f2cecf1dc98c5c960a92e8913238a61711bc90ec6e828521",
    "amd-asvk-genoa": "197e610743a917d6b9bb982a5a9226ccc0a15b611be0619e626aca9151457372",
    "amd-ask-turin": "5b77ef5fe7a7a004fd9032668fba9d0fda22f88c4442069a479636a6ae3b3185",
    "amd-asvk-turin": "104e10a8bd060a3c20a434261a57d0588fd65a88915b4f65b08bdecaf8df1a3c",
}
KDS_FILES = {
    (Product.MILAN, "vcek"): "ask_ark_milan.pem",
    (Product.MILAN, "vlek"): "ask_ark_milan_vlek.pem",
    (Product.GENOA, "vcek"): "ask_ark_genoa.pem",
    (Product.GENOA, "vlek"): "ask_ark_genoa_vlek.pem",
    (Product.TURIN, "vcek"): "ask_ark_turin_vcek.pem",
    (Product.TURIN, "vlek"): "ask_ark_turin_vlek.pem",
}


def test_pins_are_the_expected_fingerprints() -> None:
    pins = {pin.name: pin.sha256 for pin in [*ARKS.values(), *INTERMEDIATES.values()]}
    assert pins == EXPECTED_SHA256
    for product in Product:
        assert fingerprint(ark(product).certificate) == EXPECTED_SHA256[ark(product).name]
    for (product, key), pin in INTERMEDIATES.items():
        assert fingerprint(intermediate(product, key)) == EXPECTED_SHA256[pin.name]  # type: ignore[arg-type]
        assert pin.source_url == f"https://kdsintf.amd.com/{key}/v1/{product.value}/cert_chain"


@pytest.mark.parametrize(("product_key", "filename"), KDS_FILES.items(), ids=KDS_FILES.values())
def test_pins_equal_the_published_kds_chains(
    product_key: tuple[Product, str], filename: str
) -> None:
    product, key = product_key
    published = load_certificates((SNP / "amd-kds-cert-chains" / filename).read_bytes())
    assert published == [intermediate(product, key), ark(product).certificate]  # type: ignore[arg-type]


@pytest.mark.parametrize("product", list(Product))
def test_arks_are_self_signed_and_sign_their_intermediates(product: Product) -> None:
    root = ark(product).certificate
    root.verify_directly_issued_by(root)
    now = datetime(2030, 1, 1, tzinfo=UTC)
    for key in ("vcek", "vlek"):
        cert = intermediate(product, key)  # type: ignore[arg-type]
        cert.verify_directly_issued_by(root)
        assert cert.not_valid_before_utc < now < cert.not_valid_after_utc
    assert root.not_valid_before_utc < now < root.not_valid_after_utc
