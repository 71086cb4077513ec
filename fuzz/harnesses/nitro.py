"""AWS Nitro attestation documents (``broker/evidence/nitro/abi.py``, ``verify.py``): COSE_Sign1
over a CBOR map, with the certificate and CA bundle inside, verified at the real documents'
instants. The first byte chooses the instant (one per real document); the rest is the
document. ``nitro_signed`` re-signs mutated payloads to reach the content checks.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from broker.evidence.nitro import VERIFIER
from fuzz.engine import VECTORS, Harness, Target

DOCS = VECTORS / "nitro" / "evervault-docs"
#: The real documents and their instants (tests/vectors/nitro/evervault-docs/MANIFEST.md).
CASES = (
    ("valid-attestation-doc-2022-10-13.cose", datetime(2022, 10, 13, 8, 58, 20, tzinfo=UTC)),
    ("debug-mode-attestation-doc-2022-10-12.cose", datetime(2022, 10, 12, 13, 51, 40, tzinfo=UTC)),
    ("ga-attestation-doc-2023-09-18.cose", datetime(2023, 9, 18, 15, 5, tzinfo=UTC)),
)


def setup() -> Target:
    def target(data: bytes) -> None:
        if data:
            VERIFIER.verify(data[1:], {}, now=CASES[data[0] % len(CASES)][1])

    return target


def seeds() -> Iterator[tuple[str, bytes]]:
    for index, (name, _) in enumerate(CASES):
        yield name.removesuffix(".cose"), bytes([index]) + (DOCS / name).read_bytes()


HARNESS = Harness("nitro", setup, seeds, __doc__ or "", max_len=16384)
