"""The shipped example policies against claims built by hand from the real vectors'
manifests, and the contents of explanations.

These need no verifier; test_real_vectors.py runs the real verifiers on the same vectors and
evaluates the examples on what they produce.
"""

from __future__ import annotations

from datetime import UTC, datetime

from broker.errors import PolicyDenied
from broker.evidence.claims import Tee
from broker.policy import evaluate, load_policy
from broker.policy.evaluate import describe

from .support import (
    AWS,
    GO_SEV_GUEST_PASSES_IN_PRODUCTION,
    INTEL,
    NOW,
    POLICIES,
    claims_of,
    go_sev_guest_claims,
)

PRODUCTION = POLICIES / "snp-production-disk-key.yaml"
INSECURE = POLICIES / "insecure-debug-example.yaml"


def test_production_refuses_the_debug_go_sev_guest_report_and_explains_why() -> None:
    rules = load_policy(PRODUCTION)
    decision = evaluate(rules, go_sev_guest_claims(), NOW)
    assert not decision.allow
    (failure,) = decision.failures
    assert failure.to_json() == {
        "kind": "debug",
        "rule": "$.admit.snp",
        "claim": "debug",
        "op": "==",
        "expected": False,
        "found": True,
        "passed": False,
        "note": (
            "debug mode lets the host read the guest's memory; refused unless the section "
            "sets insecure_allow_debug: true"
        ),
    }
    # Everything else about the report is acceptable, and the explanation says so.
    passed = [(c.kind, c.claim) for c in decision.explanation if c.passed]
    assert passed == GO_SEV_GUEST_PASSES_IN_PRODUCTION
    reference = decision.explanation[4]
    assert reference.note == "snp-example-images: go-sev-guest Milan test VM (launched with DEBUG)"


def test_listing_the_measurement_and_tcb_admits_it_once_debug_is_allowed() -> None:
    rules = load_policy(INSECURE)
    decision = evaluate(rules, go_sev_guest_claims(), NOW)
    assert decision.allow
    assert decision.failures == ()
    debug = next(c for c in decision.explanation if c.kind == "debug")
    assert (debug.found, debug.note) == (True, "debug admitted by insecure_allow_debug: true")


def test_insecure_example_still_checks_the_measurement_and_tcb() -> None:
    rules = load_policy(INSECURE)
    tcb = {"bootloader": 2, "tee": 0, "snp": 4, "microcode": 68, "fmc": None}
    decision = evaluate(rules, go_sev_guest_claims(measurement="00" * 48, reported_tcb=tcb), NOW)
    assert [(c.claim, c.found) for c in decision.failures] == [
        ("measurement", "00" * 48),
        ("reported_tcb.snp", 4),
    ]


def test_production_admits_the_trustee_report() -> None:
    """tests/vectors/snp/trustee-milan-vcek: no debug, launched with an ID block."""
    tcb = {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115, "fmc": None}
    claims = go_sev_guest_claims(
        debug=False,
        guest_svn=4,
        measurement=(
            "a1f3930413247bb38cfc171579ea3c12d5fe4901f0c792f63fd75d98f1ef827c23500644e0e692e6"
            "be917f9050d3d38c"
        ),
        id_key_digest=(
            "0356215882a825279a85b300b0b742931d113bf7e32dde2e50ffde7ec743ca491ecdd7f336dc28a6"
            "e0b2bb57af7a44a3"
        ),
        family_id="01" + "00" * 15,
        image_id="02" + "00" * 15,
        reported_tcb=tcb,
    )
    decision = evaluate(load_policy(PRODUCTION), claims, NOW)
    assert decision.allow
    reference = next(c for c in decision.explanation if c.kind == "reference_values")
    assert reference.claim == "measurement, id_key_digest, family_id, image_id"


def test_denial_lists_every_reason_at_once() -> None:
    tcb = {"bootloader": 1, "tee": 0, "snp": 5, "microcode": 60, "fmc": None}
    claims = go_sev_guest_claims(vmpl=2, reported_tcb=tcb)
    decision = evaluate(load_policy(PRODUCTION), claims, NOW)
    assert [describe(c) for c in decision.failures] == [
        "debug == false, found true (debug mode lets the host read the guest's memory; "
        "refused unless the section sets insecure_allow_debug: true)",
        "reported_tcb.bootloader >= 2, found 1",
        "reported_tcb.microcode >= 68, found 60",
        "vmpl == 0, found 2",
    ]
    error = decision.to_error()
    assert isinstance(error, PolicyDenied)
    assert error.type == "policy-denied"
    assert error.detail.startswith("policy snp-production-disk-key v1 denied: debug == false")
    assert [r["claim"] for r in error.extra()["reasons"]] == [
        "debug",
        "reported_tcb.bootloader",
        "reported_tcb.microcode",
        "vmpl",
    ]
    assert error.extra()["reasons"][3]["reason"] == (
        "only the guest's most privileged software (VMPL 0) may ask for the disk key"
    )


def test_decision_json_identifies_the_policy() -> None:
    rules = load_policy(PRODUCTION)
    decision = evaluate(rules, go_sev_guest_claims(), NOW)
    doc = decision.to_json()
    assert doc["policy"] == {
        "name": "snp-production-disk-key",
        "version": 1,
        "sha256": rules.digest(),
    }
    assert (doc["allow"], doc["tee"], doc["section"], doc["at"]) == (
        False,
        "snp",
        "snp",
        "2023-01-01T00:00:00+00:00",
    )
    assert len(doc["explanation"]) == 11
    assert doc["failures"] == [doc["explanation"][3]]


def test_tdx_production_refuses_the_debug_trustee_td() -> None:
    """tests/vectors/tdx/trustee-tdx-v4-debug with the June 2023 collateral: UpToDate."""
    claims = claims_of(
        Tee.TDX,
        INTEL,
        debug=True,
        collateral_time=datetime(2023, 6, 8, 7, 24, 59, tzinfo=UTC),
        td_attributes={"debug": True, "sept_ve_disable": True},
        mr_td=(
            "705ee9381b8633a9fbe532b52345e8433343d2868959f57889d84ca377c395b689cac1599ccea1b7"
            "d420483a9ce5f031"
        ),
        rtmr=[
            "e940da7c2712d2790e2961e00484f4fa8e6f9eed71361655ae22699476b14f9e63867eb41edd4b48"
            "0fef0c59f496b288",
            "559cfcf42716ed6c40a48a73d5acb7da255435012f0a9f00fbe8c1c57612ede486a5684c4c9ff3dd"
            "f52315fcdca3a596",
            "00" * 48,
            "00" * 48,
        ],
        tcb_status="UpToDate",
        advisory_ids=[],
        tcb_evaluation_data_number=15,
    )
    at = datetime(2023, 7, 1, 1, tzinfo=UTC)
    decision = evaluate(load_policy(POLICIES / "tdx-production.yaml"), claims, at)
    assert [c.kind for c in decision.failures] == ["debug"]
    collateral = next(c for c in decision.explanation if c.claim == "collateral_time")
    assert (collateral.passed, collateral.note) == (True, "age 22d 17h 35m 1s")


def test_sgx_example_admits_the_signal_enclave() -> None:
    """tests/vectors/sgx/libsignal-dcap-2023: SWHardeningNeeded for two accepted advisories."""
    claims = claims_of(
        Tee.SGX,
        INTEL,
        collateral_time=datetime(2023, 1, 18, 21, 56, 9, tzinfo=UTC),
        mr_enclave="337ac97ce088a132daeb1308ea3159f807de4a827e875b2c90ce21bf4751196f",
        mr_signer="54f930a34e8995edab0f96f31d73679dd151389053b065b6ee49fa55fe8c5ac6",
        isv_prod_id=1,
        isv_svn=1,
        tcb_status="SWHardeningNeeded",
        advisory_ids=["INTEL-SA-00615", "INTEL-SA-00657"],
    )
    at = datetime.fromtimestamp(1674105089, UTC)
    decision = evaluate(load_policy(POLICIES / "sgx-enclave-data-key.yaml"), claims, at)
    assert decision.allow, [describe(c) for c in decision.failures]


def test_nitro_example_admits_the_production_enclave_only_while_fresh() -> None:
    """tests/vectors/nitro/evervault-docs valid-attestation-doc-2022-10-13."""
    rules = load_policy(POLICIES / "nitro-enclave.yaml")
    pcrs = {k.removeprefix("pcrs."): v for k, v in rules.reference_sets[0].entries[0].values}
    produced = datetime(2022, 10, 13, 8, 58, 2, 136000, tzinfo=UTC)
    claims = claims_of(Tee.NITRO, AWS, evidence_time=produced, pcrs=pcrs, digest="SHA384")
    assert evaluate(rules, claims, datetime(2022, 10, 13, 8, 58, 20, tzinfo=UTC)).allow
    late = evaluate(rules, claims, datetime(2022, 10, 13, 9, 10, tzinfo=UTC))
    assert [c.claim for c in late.failures] == ["evidence_time"]
    debug = claims_of(
        Tee.NITRO,
        AWS,
        debug=True,
        evidence_time=produced,
        digest="SHA384",
        pcrs={"0": "00" * 48, "1": "00" * 48, "2": "00" * 48},
    )
    refused = evaluate(rules, debug, datetime(2022, 10, 13, 8, 58, 20, tzinfo=UTC))
    assert [c.kind for c in refused.failures] == ["debug", "reference_values"]


def test_default_policy_denies() -> None:
    decision = evaluate(
        load_policy(POLICIES / "default.yaml"), go_sev_guest_claims(debug=False), NOW
    )
    assert not decision.allow
    assert describe(decision.failures[0]) == (
        "tee in [], found snp (this policy has no section for snp and no 'any' section)"
    )
