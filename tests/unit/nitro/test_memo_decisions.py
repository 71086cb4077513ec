"""The Nitro verifier's memos (parsed DER certificates by their bytes, verified links by
fingerprint) never change a decision (tests/unit/memos.py)."""

from __future__ import annotations

from dataclasses import replace

from cryptography.hazmat.primitives import serialization

from broker.evidence.nitro.verify import verify
from broker.simulate.nitro import FakeNitroAuthority
from tests.unit.memos import assert_memos_change_nothing, outcome
from tests.unit.nitro.vectors import PRODUCTION_PCRS, SYNTHETIC_AT


def test_certificates_swapped_between_roles_decide_alike(authority: FakeNitroAuthority) -> None:
    document, leaf = authority.build(pcrs=PRODUCTION_PCRS, timestamp=SYNTHETIC_AT)
    leaf_der = leaf.certificate.public_bytes(serialization.Encoding.DER)
    root_der, intermediate_der = document.cabundle
    variants = {
        "valid": document,
        "cabundle reversed": replace(document, cabundle=(intermediate_der, root_der)),
        "intermediate as the leaf": replace(document, certificate=intermediate_der),
        "leaf in the cabundle": replace(document, cabundle=(root_der, leaf_der)),
        "root only": replace(document, cabundle=(root_der,)),
        "garbage in the cabundle": replace(document, cabundle=(root_der, b"\x30\x00")),
    }
    signed = {name: authority.sign(doc, leaf) for name, doc in variants.items()}
    roots = [authority.trusted_root()]

    def decide(name: str) -> object:
        return outcome(lambda: verify(signed[name], {}, now=SYNTHETIC_AT, extra_roots=roots))

    decisions = assert_memos_change_nothing(list(signed), decide, str)
    assert decisions["valid"][0] == "decided"
    assert sum(decision[0] == "refused" for decision in decisions.values()) == len(signed) - 1
