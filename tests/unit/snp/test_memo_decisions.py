"""The SNP verifier's memos (parsed endorsements, cert chains and CRLs by their bytes,
verified links by fingerprint) never change a decision (tests/unit/memos.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives import serialization

from broker.evidence.snp import verify
from broker.evidence.trust import TrustedRoot
from broker.simulate.snp import SnpKit
from tests.unit.memos import assert_memos_change_nothing, outcome

NOW = datetime(2025, 3, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Input:
    name: str
    collateral: Mapping[str, bytes]
    root: TrustedRoot


def test_collateral_swapped_between_roles_decides_alike(kit: SnpKit) -> None:
    evidence = kit.sign(kit.report())
    base = kit.collateral()
    vcek_pem = kit.vcek.public_bytes(serialization.Encoding.PEM)
    ark_crl = kit.crl([], issuer="ark")
    revoking = kit.crl([kit.vcek], issuer="ask")
    changes: list[tuple[str, Callable[[dict[str, bytes]], None]]] = [
        ("valid", lambda c: None),
        ("vcek as PEM", lambda c: c.update(vcek=vcek_pem)),
        ("vcek as cert_chain", lambda c: c.update(cert_chain=c["vcek"])),
        ("cert_chain as vcek", lambda c: c.update(vcek=c["cert_chain"])),
        ("blank cert_chain", lambda c: c.update(cert_chain=b"\n")),
        ("blank vcek", lambda c: c.update(vcek=b"\n")),
        ("no cert_chain", lambda c: c.pop("cert_chain")),
        ("ARK CRL", lambda c: c.update(crl=ark_crl)),
        ("ASK CRL revoking the VCEK", lambda c: c.update(crl=revoking)),
        ("CRL as vcek", lambda c: c.update(vcek=ark_crl)),
        ("vcek as CRL", lambda c: c.update(crl=c["vcek"])),
        ("cert_chain as CRL", lambda c: c.update(crl=c["cert_chain"])),
    ]
    inputs = []
    for name, change in changes:
        collateral = dict(base)
        change(collateral)
        inputs.append(Input(name, collateral, kit.root()))
    inputs.append(Input("valid, root named otherwise", base, kit.root("other")))

    def decide(given: Input) -> object:
        return outcome(
            lambda: verify(evidence, given.collateral, now=NOW, extra_roots=[given.root]).signer
        )

    decisions = assert_memos_change_nothing(inputs, decide, lambda given: given.name)
    assert decisions["valid"][0] == "decided"
    assert decisions["ASK CRL revoking the VCEK"][:2] == ("refused", "CertificateRevoked")
    assert decisions["valid, root named otherwise"][1].root == "insecure-test-other"
