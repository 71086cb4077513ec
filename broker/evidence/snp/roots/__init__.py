"""Pinned AMD trust anchors for SEV-SNP: one ARK per product, and the ASK (VCEK chains) and
ASVK (VLEK chains) intermediates that AMD signs with it.

Source: AMD Key Distribution Service, ``https://kdsintf.amd.com/vcek/v1/{product}/cert_chain``
(ASK then ARK) and ``https://kdsintf.amd.com/vlek/v1/{product}/cert_chain`` (ASVK then ARK),
as published byte-identically in google/go-sev-guest ``verify/trust/ask_ark_*.pem`` at commit
af1c107a648f47253da23a9de7a7c82ec073cfdb (2025-11-19, our fetch date); copies with their
manifest are in ``tests/vectors/snp/amd-kds-cert-chains``. The VCEK and VLEK chains of a
product share one ARK. All are RSA-4096 with RSASSA-PSS/SHA-384 signatures.

Only the ARKs are trust anchors. The ASK/ASVK ship here because every verifier needs them and
they change rarely; a ``cert_chain`` collateral may bring a newer one, which must then chain
to the same pinned ARK.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cryptography import x509

from broker.evidence.snp.products import Product
from broker.evidence.trust import TrustedRoot, load_pinned_certificate, load_pinned_root

KeyKind = Literal["vcek", "vlek"]

FETCHED = "2025-11-19"
KDS_CERT_CHAIN_URL = "https://kdsintf.amd.com/{key}/v1/{product}/cert_chain"


@dataclass(frozen=True, slots=True)
class PinnedCertificate:
    name: str
    filename: str
    sha256: str
    source_url: str


def _pin(name: str, product: Product, key: KeyKind, sha256: str) -> PinnedCertificate:
    url = KDS_CERT_CHAIN_URL.format(key=key, product=product.value)
    return PinnedCertificate(name, f"{name.removeprefix('amd-')}.pem", sha256, url)


#: SHA-256 of each pinned DER certificate: the ARKs (trust anchors), then the ASK
#: ("SEV-<Product>", issuer of VCEKs) and ASVK ("SEV-VLEK-<Product>", issuer of VLEKs).
_ARK_SHA256 = {
    Product.MILAN: "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
    Product.GENOA: "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
    Product.TURIN: "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
}
_INTERMEDIATE_SHA256: dict[tuple[Product, KeyKind], str] = {
    (Product.MILAN, "vcek"): "67d303bd3905fd38db8b20e0793699870e7fa612eaad5dec358293fd8c0bac1b",
    (Product.MILAN, "vlek"): "c5e081f59b7efab1fe2f8b505e159704e72f29cab7ef7cf628a05a42439082f5",
    (Product.GENOA, "vcek"): "5464738c1546aed5f2cecf1dc98c5c960a92e8913238a61711bc90ec6e828521",
    (Product.GENOA, "vlek"): "197e610743a917d6b9bb982a5a9226ccc0a15b611be0619e626aca9151457372",
    (Product.TURIN, "vcek"): "5b77ef5fe7a7a004fd9032668fba9d0fda22f88c4442069a479636a6ae3b3185",
    (Product.TURIN, "vlek"): "104e10a8bd060a3c20a434261a57d0588fd65a88915b4f65b08bdecaf8df1a3c",
}
_INTERMEDIATE_NAME = {"vcek": "ask", "vlek": "asvk"}

ARKS: dict[Product, PinnedCertificate] = {
    product: _pin(f"amd-ark-{product.value.lower()}", product, "vcek", sha256)
    for product, sha256 in _ARK_SHA256.items()
}
INTERMEDIATES: dict[tuple[Product, KeyKind], PinnedCertificate] = {
    (product, key): _pin(
        f"amd-{_INTERMEDIATE_NAME[key]}-{product.value.lower()}", product, key, sha256
    )
    for (product, key), sha256 in _INTERMEDIATE_SHA256.items()
}


# Loaded at import, each checked against its fingerprint.
_ARK_ROOTS: dict[Product, TrustedRoot] = {
    product: load_pinned_root(__name__, pin.filename, pin.name, pin.sha256)
    for product, pin in ARKS.items()
}
_INTERMEDIATE_CERTIFICATES: dict[tuple[Product, KeyKind], x509.Certificate] = {
    product_and_key: load_pinned_certificate(__name__, pin.filename, pin.name, pin.sha256)
    for product_and_key, pin in INTERMEDIATES.items()
}


def ark(product: Product) -> TrustedRoot:
    """The pinned ARK of ``product``."""
    return _ARK_ROOTS[product]


def intermediate(product: Product, key: KeyKind) -> x509.Certificate:
    """The pinned ASK (``key="vcek"``) or ASVK (``key="vlek"``) of ``product``."""
    return _INTERMEDIATE_CERTIFICATES[(product, key)]
