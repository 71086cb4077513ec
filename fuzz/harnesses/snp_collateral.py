"""SEV-SNP collateral a guest may send with its report (``broker/evidence/snp/endorsement.py``,
``broker/evidence/trust.py``): the VCEK/VLEK certificate and its AMD extensions, the
ASK/ARK ``cert_chain``, a ``crl``, the ``product`` name.

The first byte chooses which collateral item the rest replaces, next to the real go-sev-guest
report and VCEK at their vector's instant (VCEK, cert_chain, crl, product).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from broker.evidence.snp import VERIFIER
from fuzz.engine import VECTORS, Harness, Target

SNP = VECTORS / "snp"
REPORT = SNP / "go-sev-guest-milan-v2" / "attestation.bin"
VCEK = SNP / "go-sev-guest-milan-v2" / "vcek.der"
NOW = datetime(2022, 9, 24, 1, tzinfo=UTC)
SLOTS = ("vcek", "cert_chain", "crl", "product")


def setup() -> Target:
    report, vcek = REPORT.read_bytes(), VCEK.read_bytes()

    def target(data: bytes) -> None:
        if not data:
            return
        collateral = {"vcek": vcek, SLOTS[data[0] % len(SLOTS)]: data[1:]}
        VERIFIER.verify(report, collateral, now=NOW)

    return target


def seeds() -> Iterator[tuple[str, bytes]]:
    yield "vcek-go-sev-guest", b"\x00" + VCEK.read_bytes()
    yield "vcek-trustee", b"\x00" + (SNP / "trustee-milan-vcek" / "test-vcek.der").read_bytes()
    yield "vlek-trustee", b"\x00" + (SNP / "trustee-milan-vlek" / "test-vlek.der").read_bytes()
    yield "vcek-turin", b"\x00" + (SNP / "virtee-sev-turin-vcek" / "vcek_turin.der").read_bytes()
    chains = SNP / "amd-kds-cert-chains"
    yield "chain-milan", b"\x01" + (chains / "ask_ark_milan.pem").read_bytes()
    yield "chain-genoa", b"\x01" + (chains / "ask_ark_genoa.pem").read_bytes()
    yield "product", b"\x03Milan"


HARNESS = Harness("snp_collateral", setup, seeds, __doc__ or "", max_len=8192)
