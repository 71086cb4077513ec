from __future__ import annotations

import hashlib
from importlib import resources

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from broker.evidence.dcap import roots
from broker.evidence.trust import fingerprint

from .vectors import INTEL_ROOTS


def test_root_fingerprint_is_pinned() -> None:
    root = roots.INTEL_ROOT
    assert root.name == "intel-sgx-root-ca"
    assert root.fingerprint == "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"
    assert root.fingerprint == roots.ROOT_SHA256
    data = resources.files(roots.__name__).joinpath(roots.ROOT_FILE).read_bytes()
    assert hashlib.sha256(data).hexdigest() == (
        "194123d2a18be2beb525d0f0cc10a8998be1e63d7a0ecb723cb194f3e9833912"
    )
    # Same bytes as the vector staging and the root at the end of every PCK chain.
    assert data == (INTEL_ROOTS / "Intel_SGX_Provisioning_Certification_RootCA.pem").read_bytes()


def test_tcb_signing_certificates_are_pinned_and_issued_by_the_root() -> None:
    certs = roots.KNOWN_TCB_SIGNING_CERTS
    assert [fingerprint(c) for c in certs] == list(roots.TCB_SIGNING_CERTS.values())
    root = roots.INTEL_ROOT.certificate
    for cert in certs:
        cert.verify_directly_issued_by(root)
        assert "TCB Signing" in cert.subject.rfc4514_string()
    staged = [
        x509.load_pem_x509_certificates(path.read_bytes())[0]
        for path in sorted(INTEL_ROOTS.glob("intel_sgx_tcb_signing_chain_*.pem"))
    ]
    assert list(certs) == staged
    # The renewal kept the key (intel-roots/MANIFEST.md).
    assert certs[0].public_key() == certs[1].public_key()


def test_loaded_chains_carry_the_pinned_objects() -> None:
    """A chain ending in a pinned certificate is given the pinned object (read in full at
    import), so a new platform does not pay for reading Intel's root again."""
    from broker.evidence.trust import load_certificate, load_certificates

    from .vectors import SIGNAL_2023_DIR

    leaf, ca, root = load_certificates((SIGNAL_2023_DIR / "pck_chain.pem").read_bytes())
    assert root is roots.INTEL_ROOT.certificate
    assert leaf is not roots.INTEL_ROOT.certificate
    assert ca is not roots.INTEL_ROOT.certificate
    signer, root_again = load_certificates((SIGNAL_2023_DIR / "tcb_issuer_chain.pem").read_bytes())
    assert signer is roots.KNOWN_TCB_SIGNING_CERTS[0]
    assert root_again is roots.INTEL_ROOT.certificate
    der = root.public_bytes(serialization.Encoding.DER)
    assert load_certificate(der) is roots.INTEL_ROOT.certificate
    # A certificate that differs in one byte is not taken for the pinned one.
    changed = bytearray(der)
    changed[-1] ^= 1
    assert load_certificate(bytes(changed)) is not roots.INTEL_ROOT.certificate


def test_pinned_signers_are_linked_to_the_root_once() -> None:
    from broker.errors import ConfigurationError
    from broker.evidence.trust import LinkCache, certificate_digest

    root, signer = roots.INTEL_ROOT.certificate, roots.KNOWN_TCB_SIGNING_CERTS[0]
    links = LinkCache()
    links.pin(signer, root, "TCB Signing")
    links.clear()
    assert len(links) == 0
    assert (certificate_digest(signer), certificate_digest(root)) in links._pinned
    links.verify_link(signer, root, "TCB Signing")
    assert len(links) == 0  # answered by the pinned link, nothing verified again
    with pytest.raises(ConfigurationError, match=r"^pinned root certificate .* is not signed by"):
        links.pin(root, signer, "root")
