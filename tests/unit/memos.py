"""Checking that a memo saves work and never changes a decision (docs/architecture.md §9).

A decision is what a check returns or raises (type and text). The cached path decides each
input with the memos warm from the input before it; the uncached path decides it on memos
cleared first. Every ordered pair of an adversarial list of inputs must decide alike.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import TypeVar

from broker.collateral import intel_pcs
from broker.errors import KeybrokerError
from broker.evidence.dcap.verify import clear_caches
from broker.evidence.nitro.verify import _parse_der
from broker.evidence.snp.endorsement import load_endorsement
from broker.evidence.snp.verify import _parse_cert_chain, _parse_crls
from broker.evidence.tpm.akcert import _certificates as _ak_certificates
from broker.evidence.trust import DEFAULT_LINKS
from broker.evidence.vtpm.runtime import AK_KEYS

T = TypeVar("T")


def outcome(check: Callable[[], object]) -> object:
    """``check()``'s value, or its error's type and text (a crash included)."""
    try:
        return ("decided", check())
    except KeybrokerError as exc:
        return ("refused", type(exc).__name__, exc.detail)
    except Exception as exc:  # a crash is a decision too, and must not depend on a memo
        return ("crashed", type(exc).__name__, str(exc))


def clear_evidence_memos() -> None:
    """Forget every fact the evidence verifiers and collateral lookups remember."""
    clear_caches()
    DEFAULT_LINKS.clear()
    _parse_cert_chain.clear()
    _parse_crls.clear()
    load_endorsement.clear()
    _parse_der.clear()
    intel_pcs._pck_platforms.clear()
    _ak_certificates.clear()
    AK_KEYS.clear()


def assert_memos_change_nothing(
    inputs: Sequence[T],
    decide: Callable[[T], object],
    name: Callable[[T], str] = repr,
    clear: Callable[[], None] = clear_evidence_memos,
) -> dict[str, object]:
    """Every ordered pair: the second input decides after the first as it does alone.
    Returns each input's decision alone, by name."""

    def uncached(given: T) -> object:
        clear()
        return decide(given)

    alone = {name(given): uncached(given) for given in inputs}
    for first, second in itertools.permutations(inputs, 2):
        uncached(first)
        assert decide(second) == alone[name(second)], f"{name(second)} after {name(first)}"
    return alone
