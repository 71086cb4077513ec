"""The benchmark's scenarios: each one's evidence verifies and its policy admits it, and the
SNP fleet gives every platform its own chip identity."""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509 import load_der_x509_certificate
from keybroker_guest.evidence import BindingInput

from broker.bench.scenarios import SCENARIOS, Scenario, load_fleet
from broker.evidence.registry import verifier_for
from broker.guest.client import tee_jwk
from broker.policy.evaluate import evaluate
from broker.policy.loader import load_policy_text
from broker.release.binding import expected_report_data
from broker.timeutil import utcnow

PLATFORMS = 3


@pytest.fixture(scope="module")
def guest() -> tuple[BindingInput, str]:
    public, jwk = tee_jwk(rsa.generate_private_key(65537, 3072))
    nonce = base64.b64encode(secrets.token_bytes(32)).decode()
    binding = BindingInput(
        expected_report_data(nonce, jwk, "sha384"), base64.b64decode(nonce), public.spki_der()
    )
    return binding, nonce


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_each_scenario_makes_evidence_its_policy_admits(
    name: str, tmp_path: Path, guest: tuple[BindingInput, str]
) -> None:
    scenario: Scenario = SCENARIOS[name]
    platforms = PLATFORMS if scenario.max_platforms > 1 else 1
    material = scenario.prepare(tmp_path / name, platforms)
    source = scenario.source(material)
    policy = load_policy_text(
        json.dumps(scenario.policy("bench-policy", material.root_names())), is_json=True
    )
    binding, _ = guest
    identities = set()
    for platform in range(platforms):
        evidence, collateral = source.produce(binding, platform)
        claims = verifier_for(scenario.tee).verify(
            evidence, collateral, now=utcnow(), extra_roots=material.roots()
        )
        decision = evaluate(policy, claims, utcnow())
        assert decision.allow, decision
        identities.add(claims.document().get("chip_id"))
    assert len(identities) == platforms  # SNP: one chip ID per platform


@pytest.mark.parametrize("name", ["tdx", "sgx", "nitro"])
def test_scenarios_of_one_platform_refuse_a_fleet(name: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="simulates one platform"):
        SCENARIOS[name].prepare(tmp_path / name, 2)


def test_every_fleet_chip_holds_the_key_of_its_own_vcek(tmp_path: Path) -> None:
    material = SCENARIOS["snp"].prepare(tmp_path / "snp", PLATFORMS)
    chips = load_fleet(material.folder / f"fleet-{PLATFORMS}.bin")
    assert len(chips) == PLATFORMS
    assert len({chip_id for chip_id, _, _ in chips}) == PLATFORMS
    for _, key, der in chips:
        spki = PublicFormat.SubjectPublicKeyInfo
        certified = load_der_x509_certificate(der).public_key().public_bytes(Encoding.DER, spki)
        assert key.public_key().public_bytes(Encoding.DER, spki) == certified
