"""Intel TCB Info and QE Identity JSON (``broker/evidence/dcap/collateral.py``): the signed
envelope read member by member with exact source spans, then the typed body.

The first byte chooses the parser (even: TCB Info, odd: QE Identity); the rest is the
document. ``intel_signed`` re-signs mutated bodies to reach the TCB appraisal."""

from __future__ import annotations

from collections.abc import Iterator

from broker.evidence.dcap.collateral import parse_qe_identity, parse_tcb_info
from fuzz.engine import VECTORS, Harness, Target


def setup() -> Target:
    def target(data: bytes) -> None:
        if data:
            (parse_qe_identity if data[0] & 1 else parse_tcb_info)(data[1:])

    return target


def seeds() -> Iterator[tuple[str, bytes]]:
    for path in sorted(VECTORS.glob("*/*/*.json")):
        name = path.name.lower()
        if name.startswith("tcb"):
            yield f"{path.parent.name}-{path.stem}", b"\x00" + path.read_bytes()
        elif name.startswith("qe"):
            yield f"{path.parent.name}-{path.stem}", b"\x01" + path.read_bytes()


HARNESS = Harness("dcap_collateral", setup, seeds, __doc__ or "", max_len=16384)
