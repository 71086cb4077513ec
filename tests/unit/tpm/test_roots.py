"""The pinned vTPM AK roots and shipped intermediates: fingerprints, identities, vendors, and
byte-identical to the vectors they were copied from."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from broker.evidence.tpm import roots
from broker.evidence.trust import common_name, fingerprint, sha256_hex

VECTORS = Path(__file__).parents[2] / "vectors"
#: Where each pinned file was copied from (roots/README.md).
COPIED_FROM = {
    "azure-vtpm-root-2023.pem": "azure-vtpm/roots/azure_vtpm_root_ca_2023.pem",
    "google-tpm-ek-root-2018.der": "tpm/go-tpm-tools-gce-cos85/tpm_ek_root_1.cer",
    "google-ek-ak-root.der": "tpm/go-tpm-tools-gce-cos85/gcp_ek_ak_ca_root.crt",
    "google-tpm-ek-intermediate-2.der": "tpm/go-tpm-tools-gce-cos85/tpm_ek_intermediate_2.crt",
    "google-tpm-ek-intermediate-3.der": "tpm/go-tpm-tools-gce-cos85/tpm_ek_intermediate_3.crt",
    "google-ek-ak-intermediate-v3.der": (
        "tpm/go-tpm-tools-gce-cos85/gcp_ek_ak_ca_intermediate_v3.crt"
    ),
}
#: The fingerprints the vectors' manifests give.
MANIFEST_FINGERPRINTS = {
    "azure-vtpm-root-2023": "e6c596b17f8ffefba5c300f714cfb1260c6028704ecf7becc4ab5018efb00e95",
}


def test_every_pinned_file_is_its_vector_byte_for_byte() -> None:
    pinned = {p.filename for p in (*roots.ROOTS, *roots.INTERMEDIATES)}
    assert pinned == set(COPIED_FROM)
    for filename, source in COPIED_FROM.items():
        shipped = resources.files(roots.PACKAGE).joinpath(filename).read_bytes()
        assert shipped == (VECTORS / source).read_bytes(), filename


def test_the_roots_load_with_their_pinned_fingerprints() -> None:
    loaded = roots.roots()
    assert [root.name for root in loaded] == [
        "azure-vtpm-root-2023",
        "google-tpm-ek-root-2018",
        "google-ek-ak-root",
    ]
    for root, pin in zip(loaded, roots.ROOTS, strict=True):
        assert root.fingerprint == pin.sha256
        assert not root.insecure
        assert root.certificate.subject == root.certificate.issuer
    assert loaded[0].fingerprint == MANIFEST_FINGERPRINTS["azure-vtpm-root-2023"]


GOOGLE_2018 = "tpm_ek_v1_cloud_host_root-signer-0-2018-04-06T10:58:26-07:00 K:1, 1:Pw003HsFYO4:0:18"


@pytest.mark.parametrize(
    ("name", "common", "years"),
    [
        ("azure-vtpm-root-2023", "Azure Virtual TPM Root Certificate Authority 2023", (2023, 2048)),
        ("google-tpm-ek-root-2018", GOOGLE_2018, (2018, 2118)),
        ("google-ek-ak-root", "EK/AK CA Root", (2022, 2122)),
    ],
)
def test_the_roots_identities(name: str, common: str, years: tuple[int, int]) -> None:
    root = next(r for r in roots.roots() if r.name == name)
    cert = root.certificate
    assert common_name(cert.subject) == common
    assert (cert.not_valid_before_utc.year, cert.not_valid_after_utc.year) == years


def test_each_intermediate_chains_to_a_pinned_root() -> None:
    for cert, pin in zip(roots.intermediates(), roots.INTERMEDIATES, strict=True):
        assert fingerprint(cert) == pin.sha256
        issuer = next(r for r in roots.roots() if r.certificate.subject == cert.issuer)
        cert.verify_directly_issued_by(issuer.certificate)
        assert issuer.name.startswith("google-")


def test_vendors() -> None:
    assert roots.vendor("azure-vtpm-root-2023") == "microsoft"
    assert roots.vendor("google-ek-ak-root") == "google"
    assert roots.vendor("insecure-test-x") is None


def test_a_pin_that_differs_refuses_to_load() -> None:
    from broker.errors import ConfigurationError
    from broker.evidence.trust import load_pinned_root

    pin = roots.ROOTS[0]
    with pytest.raises(ConfigurationError, match="SHA-256 e6c596b1"):
        load_pinned_root(roots.PACKAGE, pin.filename, pin.name, "00" * 32)
    assert sha256_hex(b"") != pin.sha256
