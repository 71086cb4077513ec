"""SEV-SNP attestation reports (``broker/evidence/snp/abi.py``, ``verify.py``): the raw
report a guest sends, verified against real AMD collateral at its vector's instant.

The first byte chooses the real vector whose collateral and instant are used (go-sev-guest
VCEK, Trustee VLEK, virtee VCEK); the rest is the report. Mutations mostly stop at the
report's signature; ``snp_signed`` re-signs them to reach what follows.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from broker.evidence.snp import VERIFIER
from fuzz.engine import VECTORS, Harness, Target

SNP = VECTORS / "snp"
#: (report, collateral name -> file, instant) of each real vector (its MANIFEST.md).
CASES = (
    (
        "go-sev-guest-milan-v2/attestation.bin",
        {"vcek": "go-sev-guest-milan-v2/vcek.der"},
        datetime(2022, 9, 24, 1, tzinfo=UTC),
    ),
    (
        "trustee-milan-vlek/test-vlek-report.bin",
        {"vcek": "trustee-milan-vlek/test-vlek.der"},
        datetime(2025, 6, 1, tzinfo=UTC),
    ),
    (
        "virtee-sev-milan-v2/report_milan.bin",
        {"vcek": "virtee-sev-milan-v2/vcek_milan.der"},
        datetime(2024, 1, 1, tzinfo=UTC),
    ),
)


def setup() -> Target:
    cases = [
        ({name: (SNP / path).read_bytes() for name, path in files.items()}, now)
        for _, files, now in CASES
    ]

    def target(data: bytes) -> None:
        if not data:
            return
        collateral, now = cases[data[0] % len(cases)]
        VERIFIER.verify(data[1:], collateral, now=now)

    return target


def seeds() -> Iterator[tuple[str, bytes]]:
    for index, (report, _, _) in enumerate(CASES):
        yield report.split("/")[0], bytes([index]) + (SNP / report).read_bytes()


HARNESS = Harness("snp_report", setup, seeds, __doc__ or "", max_len=4096)
