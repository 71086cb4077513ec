"""The vTPM verifier's memos (AK public keys by their JWK members, parsed AK certificates
by their bytes, verified links by fingerprint) never change a decision
(tests/unit/memos.py): a VM's AK looked up after another's, after a JWK that differs in one
member, and AK certificates of other keys or to no trusted root."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from broker.evidence.claims import Tee
from broker.evidence.registry import verifier_for
from broker.evidence.tpm.abi import Alg
from broker.evidence.trust import TrustedRoot
from broker.simulate.snp import SnpKit
from broker.simulate.tpm import AkAuthority, SoftwareAk, zero_pcrs
from broker.simulate.vtpm import bundle, runtime_data, snp_hcl_report
from tests.unit.memos import assert_memos_change_nothing, outcome

NOW = datetime(2025, 6, 1, tzinfo=UTC)
NONCE = hashlib.sha384(b"challenge").digest()


@dataclass(frozen=True)
class Input:
    name: str
    evidence: bytes
    roots: tuple[TrustedRoot, ...]


@pytest.fixture(scope="module")
def kit() -> SnpKit:
    return SnpKit.generate(rsa_bits=2048)


def _evidence(
    kit: SnpKit, jwk: dict[str, Any], signer: SoftwareAk, **members: bytes | list[bytes]
) -> bytes:
    document: dict[str, Any] = {
        "hcl_report": snp_hcl_report(kit, runtime_data(jwk)),
        "tpm_quote": signer.quote({Alg.SHA256: zero_pcrs()}, NONCE),
        **members,
    }
    return bundle(document)


def test_aks_and_ak_certificates_decide_alike_in_any_order(kit: SnpKit) -> None:
    ak, other = SoftwareAk.generate(), SoftwareAk.generate()
    authority = AkAuthority.generate()
    ak_jwk, other_jwk = ak.jwk(), other.jwk()
    certificate = authority.certify(ak.public_key()).public_bytes(Encoding.DER)
    others_certificate = authority.certify(other.public_key()).public_bytes(Encoding.DER)
    chain = [authority.chain_der()]
    trusted = (kit.root(), authority.root())
    cases = [
        ("ak", _evidence(kit, ak_jwk, ak), trusted),
        ("other ak", _evidence(kit, other_jwk, other), trusted),
        # This AK's JWK with one key member changed: another key, which signed nothing.
        ("ak's n, exponent 3", _evidence(kit, {**ak_jwk, "e": "Aw"}, ak), trusted),
        ("other's n, quoted by ak", _evidence(kit, {**ak_jwk, "n": other_jwk["n"]}, ak), trusted),
        ("quote by the other ak", _evidence(kit, ak_jwk, other), trusted),
        ("ak certified", _evidence(kit, ak_jwk, ak, ak_cert=certificate, ak_chain=chain), trusted),
        (
            "other's certificate",
            _evidence(kit, ak_jwk, ak, ak_cert=others_certificate, ak_chain=chain),
            trusted,
        ),
        (
            "ak certified, CA not trusted",
            _evidence(kit, ak_jwk, ak, ak_cert=certificate, ak_chain=chain),
            (kit.root(),),
        ),
    ]
    inputs = [Input(name, evidence, roots) for name, evidence, roots in cases]

    def decide(given: Input) -> object:
        return outcome(
            lambda: (
                verifier_for(Tee.SNP_VTPM)
                .verify(given.evidence, kit.collateral(), now=NOW, extra_roots=given.roots)
                .plain_fields()["tpm"]["ak_fingerprint"]
            )
        )

    decisions = assert_memos_change_nothing(inputs, decide, lambda given: given.name)
    assert decisions["ak"][0] == "decided"
    assert decisions["ak certified"] == decisions["ak"]
    assert decisions["other ak"][0] == "decided"
    assert decisions["other ak"] != decisions["ak"]
    for refused in ("ak's n, exponent 3", "other's n, quoted by ak", "quote by the other ak"):
        assert decisions[refused][:2] == ("refused", "SignatureInvalid"), refused
    assert decisions["other's certificate"][:2] == ("refused", "ChainInvalid")
    assert decisions["ak certified, CA not trusted"][:2] == ("refused", "ChainInvalid")
