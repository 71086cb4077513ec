from __future__ import annotations

import hashlib
from importlib import resources

from cryptography import x509

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
