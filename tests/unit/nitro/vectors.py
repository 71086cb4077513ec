"""The three real AWS documents and what their manifest says; synthetic document inputs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.unit.mutation import IGNORE_NAME_WARNINGS

__all__ = ["IGNORE_NAME_WARNINGS"]

EVERVAULT = Path(__file__).parents[2] / "vectors" / "nitro" / "evervault-docs"


@dataclass(frozen=True)
class RealDocument:
    """One real document and what tests/vectors/nitro/evervault-docs/MANIFEST.md says of it."""

    name: str
    data: bytes
    at: datetime
    """The manifest's verification instant."""
    leaf_not_after: datetime
    module_id: str
    timestamp: datetime
    debug: bool
    pcrs: Mapping[int, str]
    """Full PCR values the manifest lists (hex)."""
    pcr_prefixes: Mapping[int, tuple[str, str]]
    """PCRs the manifest abbreviates: (first, last) hex characters."""
    nonce: tuple[int, str, str] | None
    """(length, first, last hex characters) of the nonce, or None when absent."""
    public_key: str | None
    user_data: str | None
    """Exact hex, or None when absent."""


ZERO_PCR = "00" * 48
PCR3_SHARED = ("4a9329d6", "25aa")


def _read(name: str) -> bytes:
    return (EVERVAULT / name).read_bytes()


def _spki_hex(certificate_der: bytes) -> str:
    key = x509.load_der_x509_certificate(certificate_der).public_key()
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo).hex()


#: The manifest: the GA document's user_data is the SPKI of this Evervault TLS certificate.
GA_TLS_SPKI = _spki_hex(_read("ga-valid-certificate.der"))


REAL_DOCUMENTS = (
    RealDocument(
        name="valid-attestation-doc-2022-10-13.cose",
        data=_read("valid-attestation-doc-2022-10-13.cose"),
        at=datetime(2022, 10, 13, 8, 58, 20, tzinfo=UTC),
        leaf_not_after=datetime(2022, 10, 13, 11, 58, 2, tzinfo=UTC),
        module_id="i-020b6af9246d90e92-enc0183d09086c24190",
        timestamp=datetime(2022, 10, 13, 8, 58, 2, 136000, tzinfo=UTC),
        debug=False,
        pcrs={
            0: (
                "f4d48b81a460c9916d1e685119074bf24660afd3e34fae9f"
                "ca0a0d28d9d5599936332687e6f66fc890ac8cf150142d8b"
            ),
            1: (
                "bcdf05fefccaa8e55bf2c8d6dee9e79bbff31e34bf28a99a"
                "a19e6b29c37ee80b214a414b7607236edf26fcb78654e63f"
            ),
            2: (
                "d8f114da658de5481f8d9ec73907feb553560787522f705c"
                "92d7d96beed8e15e2aa611984e098c576832c292e8dc469a"
            ),
            3: (
                "4a9329d69c836267b18abbf9f4a38889124490453419e426"
                "818626348d21f989dc930b1562682a9082887454e53425aa"
            ),
            8: (
                "8790eb3cce6c83d07e84b126dc61ca923333d6f66615c4a7"
                "9157de48c5ab2418bdc60746ea7b7afbff03a1c6210201cb"
            ),
        },
        pcr_prefixes={4: ("1f442c86", "37c6")},
        nonce=(256, "cb3dc2eb", "59db3"),
        public_key=None,
        user_data=None,
    ),
    RealDocument(
        name="debug-mode-attestation-doc-2022-10-12.cose",
        data=_read("debug-mode-attestation-doc-2022-10-12.cose"),
        at=datetime(2022, 10, 12, 13, 51, 40, tzinfo=UTC),
        leaf_not_after=datetime(2022, 10, 12, 16, 49, 54, tzinfo=UTC),
        module_id="i-03ad7cdb817437eeb-enc0183cc7569b3f6e1",
        timestamp=datetime(2022, 10, 12, 13, 50, 6, 81000, tzinfo=UTC),
        debug=True,
        pcrs={0: ZERO_PCR, 1: ZERO_PCR, 2: ZERO_PCR, 8: ZERO_PCR},
        pcr_prefixes={3: PCR3_SHARED, 4: ("615fa5b1", "a6a7")},
        nonce=None,
        public_key=b"my super secret key".hex(),
        user_data=b"hello, world!".hex(),
    ),
    RealDocument(
        name="ga-attestation-doc-2023-09-18.cose",
        data=_read("ga-attestation-doc-2023-09-18.cose"),
        at=datetime(2023, 9, 18, 15, 5, tzinfo=UTC),
        leaf_not_after=datetime(2023, 9, 18, 17, 37, 12, tzinfo=UTC),
        module_id="i-0918f6c55e3b61d89-enc018aa8b8e2285d13",
        timestamp=datetime(2023, 9, 18, 15, 3, 30, 860000, tzinfo=UTC),
        debug=True,
        pcrs={0: ZERO_PCR, 1: ZERO_PCR, 2: ZERO_PCR, 8: ZERO_PCR},
        pcr_prefixes={3: PCR3_SHARED, 4: ("d0531b14", "5065")},
        nonce=(256, "bba6bfd5", "1f21"),
        public_key=None,
        user_data=GA_TLS_SPKI,
    ),
)

BY_NAME = {document.name: document for document in REAL_DOCUMENTS}
PRODUCTION = BY_NAME["valid-attestation-doc-2022-10-13.cose"]
DEBUG = BY_NAME["debug-mode-attestation-doc-2022-10-12.cose"]
GA = BY_NAME["ga-attestation-doc-2023-09-18.cose"]


#: An instant inside the synthetic chain's validity, used for synthetic documents.
SYNTHETIC_AT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
PRODUCTION_PCRS = {index: bytes([index + 1]) * 48 for index in (0, 1, 2, 3, 4, 8)}
DEBUG_PCRS = {index: bytes(48) for index in (0, 1, 2, 8)} | {3: b"\x03" * 48, 4: b"\x04" * 48}
