"""Pinned roots of the cloud vTPM attestation-key (AK) certificates, and the intermediates
that ship with them (README.md in this folder lists sources, dates and fingerprints).

* **Azure Virtual TPM Root Certificate Authority 2023**: the AK certificate of an Azure
  confidential VM's vTPM (NV index 0x01C101D0) chains through a "Global Virtual TPM CA - NN"
  intermediate, which the guest supplies (``ak_chain``), to this root.
* **Google's EK/AK roots**: a GCE vTPM's AK certificate (NV index 0x01C10000 for the RSA AK)
  chains through an intermediate to ``tpm_ek_v1_cloud_host_root`` (2018) or to "EK/AK CA
  Root" (2022). The three intermediates Google has published ship here, as go-tpm-tools
  ships them, so that a GCE guest need send only its AK certificate.

Only the roots are trust anchors; an intermediate, shipped or supplied, must chain to one.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509

from broker.evidence.trust import TrustedRoot, load_pinned_certificate, load_pinned_root

PACKAGE = __name__


@dataclass(frozen=True, slots=True)
class PinnedCertificate:
    name: str
    """The name chains ending here carry in ``vtpm.ak_root`` or ``signer.root``."""
    filename: str
    sha256: str
    """SHA-256 of the DER certificate."""
    vendor: str
    """Who runs the vTPMs whose AKs it certifies: ``microsoft`` or ``google``."""
    source_url: str
    fetched: str


#: The trust anchors.
ROOTS: tuple[PinnedCertificate, ...] = (
    PinnedCertificate(
        "azure-vtpm-root-2023",
        "azure-vtpm-root-2023.pem",
        "e6c596b17f8ffefba5c300f714cfb1260c6028704ecf7becc4ab5018efb00e95",
        "microsoft",
        "https://www.microsoft.com/pkiops/certs/Azure%20Virtual%20TPM%20Root%20Certificate"
        "%20Authority%202023.crt",
        "2026-12-07",
    ),
    PinnedCertificate(
        "google-tpm-ek-root-2018",
        "google-tpm-ek-root-2018.der",
        "9bd5285f8fb18502a7947e621ffd470266f49fcd3b73e19a190f690ad32a7caf",
        "google",
        "http://pki.goog/cloud_integrity/tpm_ek_root_1.crt",
        "2026-12-07",
    ),
    PinnedCertificate(
        "google-ek-ak-root",
        "google-ek-ak-root.der",
        "594759594b9b61524f6c8ef668f7177f7b9066bc0674f2f49fe9e052be78beb2",
        "google",
        "http://privateca-content-62d71773-0000-21da-852e-f4f5e80d7778.storage.googleapis.com/"
        "032bf9d39db4fa06aade/ca.crt",
        "2026-12-07",
    ),
)

#: Intermediates that chain to the roots above (candidates when building a chain).
INTERMEDIATES: tuple[PinnedCertificate, ...] = (
    PinnedCertificate(
        "google-tpm-ek-intermediate-2",
        "google-tpm-ek-intermediate-2.der",
        "5d8dbcf8c8053dd8ffad711b6219355032b7122c34cac0f90ccb49def69ec504",
        "google",
        "https://pki.goog/cloud_integrity/tpm_ek_intermediate_2.crt",
        "2026-12-07",
    ),
    PinnedCertificate(
        "google-tpm-ek-intermediate-3",
        "google-tpm-ek-intermediate-3.der",
        "7132b6ea71101f6c51bb58f98c3798c19b65be510eca0344318900510b593178",
        "google",
        "https://pki.goog/cloud_integrity/tpm_ek_intermediate_3.crt",
        "2026-12-07",
    ),
    PinnedCertificate(
        "google-ek-ak-intermediate-v3",
        "google-ek-ak-intermediate-v3.der",
        "c84de8116dfaf5a908f21e810487791f5437e206d00ad8025050cca6bd2ff627",
        "google",
        "go-tpm-tools server/ca-certs/gcp_ek_ak_ca_intermediate_v3.crt",
        "2026-12-07",
    ),
)


#: Every pinned AK root, each checked against its fingerprint when this module is imported
#: (a damaged file fails the broker's start, not the first attestation).
PINNED_ROOTS: tuple[TrustedRoot, ...] = tuple(
    load_pinned_root(PACKAGE, p.filename, p.name, p.sha256) for p in ROOTS
)
#: The shipped intermediates, each checked against its fingerprint.
PINNED_INTERMEDIATES: tuple[x509.Certificate, ...] = tuple(
    load_pinned_certificate(PACKAGE, p.filename, p.name, p.sha256) for p in INTERMEDIATES
)


def roots() -> tuple[TrustedRoot, ...]:
    return PINNED_ROOTS


def intermediates() -> tuple[x509.Certificate, ...]:
    return PINNED_INTERMEDIATES


def vendor(root_name: str) -> str | None:
    """The vendor of a pinned root by name; None for any other (a test root)."""
    for pinned in ROOTS:
        if pinned.name == root_name:
            return pinned.vendor
    return None
