"""The benchmark's functions run (no timing is asserted)."""

from __future__ import annotations

from benchmarks.nitro_verify import fresh_leaves, same_document
from broker.simulate.nitro import FakeNitroAuthority
from tests.unit.nitro.vectors import PRODUCTION


def test_same_document_on_a_real_document() -> None:
    assert same_document(PRODUCTION.data, PRODUCTION.at, [], seconds=0.0) > 0


def test_fresh_leaves(authority: FakeNitroAuthority) -> None:
    assert fresh_leaves(authority, 2) > 0
