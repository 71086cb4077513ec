"""The SGX extension of a PCK certificate (``broker/evidence/dcap/pck.py`` and the DER reader
``broker/evidence/der.py``): the DER value of OID 1.2.840.113741.1.13.1, parsed as the
verifier parses it once the certificate's chain has verified (``intel_signed`` reaches it
through a re-signed PCK certificate)."""

from __future__ import annotations

from collections.abc import Iterator

from cryptography import x509

from broker.evidence.dcap.pck import SGX_EXTENSION_OID, parse_sgx_extensions
from fuzz.engine import VECTORS, Harness, Target


def setup() -> Target:
    return parse_sgx_extensions


def seeds() -> Iterator[tuple[str, bytes]]:
    oid = x509.ObjectIdentifier(SGX_EXTENSION_OID)
    for path in sorted(VECTORS.glob("*/*/pck_chain.pem")):
        for cert in x509.load_pem_x509_certificates(path.read_bytes()):
            try:
                extension = cert.extensions.get_extension_for_oid(oid)
            except x509.ExtensionNotFound:
                continue
            value = extension.value
            if isinstance(value, x509.UnrecognizedExtension):
                yield path.parent.name, value.value


HARNESS = Harness("dcap_pck", setup, seeds, __doc__ or "", max_len=2048)
