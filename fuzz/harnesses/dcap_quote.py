"""Intel DCAP quotes, TDX and SGX (``broker/evidence/dcap/abi.py``, ``verify.py``), with the
PCK certificate chain they carry, verified with the real vectors' collateral and instants.

The first byte chooses the real vector (go-tdx-guest SPR TDX v4, libsignal SGX v3 2023, GCP
TDX v4 with no collateral); the rest is the quote. ``intel_signed`` re-signs mutations to
reach the appraisal.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from broker.evidence.registry import verifier_for
from fuzz.engine import Harness, Target
from tests.unit.dcap import vectors


def _cases() -> list[tuple[str, bytes, dict[str, bytes], datetime]]:
    """(tee, quote, collateral, instant) of each vector (tests/unit/dcap/vectors.py)."""
    return [
        ("tdx", vectors.spr_quote(), vectors.spr_collateral(), vectors.JUNE_2023),
        (
            "sgx",
            vectors.SIGNAL_2023_QUOTE.read_bytes(),
            vectors.signal_collateral(vectors.SIGNAL_2023_DIR),
            vectors.SIGNAL_2023_NOW,
        ),
        ("tdx", vectors.GCP_QUOTE.read_bytes(), {}, vectors.COLLATERAL_LESS_NOW),
    ]


def setup() -> Target:
    cases = [(verifier_for(tee), collateral, now) for tee, _, collateral, now in _cases()]

    def target(data: bytes) -> None:
        if not data:
            return
        verifier, collateral, now = cases[data[0] % len(cases)]
        verifier.verify(data[1:], collateral, now=now)

    return target


def seeds() -> Iterator[tuple[str, bytes]]:
    for index, (tee, quote, _, _) in enumerate(_cases()):
        yield f"{index}-{tee}", bytes([index]) + quote


HARNESS = Harness("dcap_quote", setup, seeds, __doc__ or "", max_len=16384)
