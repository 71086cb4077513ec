"""Pinned Intel SGX Root CA and the known Intel SGX TCB Signing certificates (see README.md).

The Root CA is the only trust anchor. The TCB Signing certificates are the default signers of
TCB Info and QE Identity; they are pinned here so that verification works offline without an
issuer-chain file, and are chained to the Root CA on every use: their signature by the root
is verified once, here, and remembered for the life of the process (``LinkCache.pin``), as
is theirs when an issuer chain carries the same bytes.
"""

from __future__ import annotations

from cryptography import x509

from broker.evidence.trust import DEFAULT_LINKS, TrustedRoot, load_pinned_root

ROOT_NAME = "intel-sgx-root-ca"
ROOT_FILE = "Intel_SGX_Provisioning_Certification_RootCA.pem"
ROOT_SOURCE = (
    "https://certificates.trustedservices.intel.com/Intel_SGX_Provisioning_Certification_RootCA.pem"
)
#: SHA-256 of the DER encoding (fingerprint 44:A0:19:6B:...:74:D3).
ROOT_SHA256 = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"

#: Known TCB Signing certificates, file name -> DER SHA-256.
TCB_SIGNING_CERTS: dict[str, str] = {
    "intel_sgx_tcb_signing_2018-2025.pem": (
        "ec37d98107bfb7dab6ff8de4d4dda6fde30a6f50b0d7b03eefb5652f1e652969"
    ),
    "intel_sgx_tcb_signing_2025-2032.pem": (
        "c0575e76d0303b61d09cde8cbdb70db34a74f38318300d7c0e6ba8cf4bf45aea"
    ),
}


#: The pinned Intel SGX Root CA (loaded at import, its fingerprint checked).
INTEL_ROOT: TrustedRoot = load_pinned_root(__name__, ROOT_FILE, ROOT_NAME, ROOT_SHA256)

#: Both Intel SGX TCB Signing certificates (2018-2025 and the renewed 2025-2032).
KNOWN_TCB_SIGNING_CERTS: tuple[x509.Certificate, ...] = tuple(
    load_pinned_root(__name__, filename, filename, sha256).certificate
    for filename, sha256 in TCB_SIGNING_CERTS.items()
)
for _signer in KNOWN_TCB_SIGNING_CERTS:
    DEFAULT_LINKS.pin(_signer, INTEL_ROOT.certificate, "TCB Signing")
