"""The pinned AWS Nitro Enclaves root G1: fingerprint, identity, and the documents' bundles."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from broker.evidence.nitro import roots
from broker.evidence.nitro.abi import parse_signed_document
from broker.evidence.nitro.verify import PINNED_ROOT
from broker.evidence.trust import sha256_hex
from tests.unit.nitro.vectors import EVERVAULT, REAL_DOCUMENTS

# AWS Nitro Enclaves User Guide, "Verifying the root of trust": the published fingerprint.
PUBLISHED_FINGERPRINT = (
    "64:1A:03:21:A3:E2:44:EF:E4:56:46:31:95:D6:06:31:"
    "7E:D7:CD:CC:3C:17:56:E0:98:93:F3:C6:8F:79:BB:5B"
)


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def test_pinned_fingerprint_is_the_published_one() -> None:
    published = PUBLISHED_FINGERPRINT.replace(":", "").lower()
    assert published == roots.AWS_NITRO_ROOT_G1_SHA256
    root = PINNED_ROOT
    assert root.fingerprint == published
    assert sha256_hex(_der(root.certificate)) == published
    assert root.name == "aws-nitro-enclaves-root-g1"
    assert not root.insecure


def test_pinned_root_identity() -> None:
    cert = PINNED_ROOT.certificate
    assert cert.subject == cert.issuer
    assert cert.subject.rfc4514_string() == "CN=aws.nitro-enclaves,OU=AWS,O=Amazon,C=US"
    assert cert.not_valid_after_utc.year == 2049


def test_pinned_file_is_the_vector_copy_byte_for_byte() -> None:
    from importlib import resources

    shipped = resources.files(roots.PACKAGE).joinpath(roots.AWS_NITRO_ROOT_G1_FILE).read_bytes()
    assert shipped == (EVERVAULT / "nitro.pem").read_bytes()


def test_every_real_bundle_starts_with_the_pinned_root() -> None:
    pinned = _der(PINNED_ROOT.certificate)
    for real in REAL_DOCUMENTS:
        assert parse_signed_document(real.data).document.cabundle[0] == pinned
