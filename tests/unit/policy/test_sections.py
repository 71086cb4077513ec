"""First-class rules: TEE sections, signer, debug, reference values, minimum TCB, freshness."""

from __future__ import annotations

from datetime import timedelta

import pytest

from broker.evidence.claims import Signer, SignerOrigin, Tee, thaw
from broker.policy import Decision, evaluate

from .support import AMD_MILAN, AWS, INTEL, NOW, POLICIES, claims_of, policy


def by_kind(decision: Decision, kind: str) -> list[tuple[str, str, bool]]:
    return [(c.claim, c.op, c.passed) for c in decision.explanation if c.kind == kind]


# --- TEE sections ---------------------------------------------------------------------------

TWO_TEES = """\
  snp:
    require: [{claim: vmpl, equals: 0}]
  tdx:
    require: [{claim: td_attributes.sept_ve_disable, equals: true}]
"""


def test_each_tee_is_judged_by_its_own_section() -> None:
    rules = policy(TWO_TEES)
    snp = evaluate(rules, claims_of(Tee.SNP, vmpl=0), NOW)
    tdx = evaluate(rules, claims_of(Tee.TDX, INTEL, td_attributes={"sept_ve_disable": False}), NOW)
    assert (snp.allow, snp.section) == (True, "snp")
    assert (tdx.allow, tdx.section) == (False, "tdx")
    assert [c.claim for c in tdx.failures] == ["td_attributes.sept_ve_disable"]


def test_a_tee_without_a_section_is_denied() -> None:
    decision = evaluate(policy(TWO_TEES), claims_of(Tee.SGX, INTEL), NOW)
    assert not decision.allow
    assert decision.section is None
    (clause,) = decision.explanation
    assert (clause.kind, clause.claim, clause.op, clause.expected, clause.found) == (
        "tee",
        "tee",
        "in",
        ("snp", "tdx"),
        "sgx",
    )
    assert clause.note == "this policy has no section for sgx and no 'any' section"


def test_empty_policy_denies_everything() -> None:
    for tee in Tee:
        assert not evaluate(policy("  {}\n"), claims_of(tee), NOW).allow


def test_any_section_covers_tees_without_their_own() -> None:
    rules = policy(TWO_TEES + "  any:\n    signer: {origin: silicon-vendor}\n")
    decision = evaluate(rules, claims_of(Tee.SGX, INTEL), NOW)
    assert (decision.allow, decision.section) == (True, "any")
    assert (
        decision.explanation[0].note
        == "admitted by the 'any' section (sgx has no section of its own)"
    )
    assert evaluate(rules, claims_of(Tee.SNP, vmpl=1), NOW).section == "snp"


# --- signer ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "signer", "allowed"),
    [
        ("{origin: silicon-vendor}", AMD_MILAN, True),
        ("{origin: silicon-vendor}", AWS, False),
        ("{origin: infrastructure-provider}", AWS, True),
        ("{roots: [amd-ark-milan, amd-ark-genoa]}", AMD_MILAN, True),
        ("{roots: [amd-ark-genoa]}", AMD_MILAN, False),
        ("{keys: [vcek]}", AMD_MILAN, True),
        ("{keys: [vlek]}", AMD_MILAN, False),
    ],
)
def test_signer(rule: str, signer: Signer, allowed: bool) -> None:
    rules = policy(f"  any:\n    signer: {rule}\n")
    assert evaluate(rules, claims_of(Tee.SNP, signer), NOW).allow is allowed


TEST_ROOT = Signer("amd", SignerOrigin.SILICON_VENDOR, "insecure-test-cli-0", "vcek", "Milan")


def test_test_roots_are_refused_unless_named() -> None:
    refused = evaluate(policy("  snp: {}\n"), claims_of(Tee.SNP, TEST_ROOT), NOW)
    assert not refused.allow
    (failure,) = refused.failures
    assert (failure.kind, failure.claim, failure.found, failure.rule) == (
        "signer",
        "signer.root",
        "insecure-test-cli-0",
        "$.admit.snp",
    )
    assert failure.note == "a test root; admitted only when signer.roots names it"
    named = policy("  snp:\n    signer: {roots: [insecure-test-cli-0]}\n")
    assert evaluate(named, claims_of(Tee.SNP, TEST_ROOT), NOW).allow


# --- debug ----------------------------------------------------------------------------------


def test_debug_is_refused_by_default() -> None:
    decision = evaluate(policy("  snp: {}\n"), claims_of(Tee.SNP, debug=True), NOW)
    assert not decision.allow
    (failure,) = decision.failures
    assert (failure.kind, failure.claim, failure.op, failure.expected, failure.found) == (
        "debug",
        "debug",
        "==",
        False,
        True,
    )
    assert "insecure_allow_debug: true" in (failure.note or "")


def test_insecure_allow_debug_admits_debug_and_says_so() -> None:
    rules = policy("  snp:\n    insecure_allow_debug: true\n")
    decision = evaluate(rules, claims_of(Tee.SNP, debug=True), NOW)
    assert decision.allow
    clause = next(c for c in decision.explanation if c.kind == "debug")
    assert clause.rule == "$.admit.snp.insecure_allow_debug"
    assert clause.note == "debug admitted by insecure_allow_debug: true"


def test_insecure_allow_debug_false_is_the_default() -> None:
    rules = policy("  snp:\n    insecure_allow_debug: false\n")
    assert not evaluate(rules, claims_of(Tee.SNP, debug=True), NOW).allow


# --- reference values -----------------------------------------------------------------------

TDX_IMAGES = """\
reference_values:
  images:
    tee: tdx
    values:
      - label: image A
        mr_td: "{a}"
        rtmr.0: "{b}"
      - label: image B
        mr_td: "{c}"
        rtmr.0: "{d}"
""".format(a="aa" * 48, b="bb" * 48, c="cc" * 48, d="dd" * 48)


def test_reference_entry_must_match_as_a_whole() -> None:
    rules = policy("  tdx:\n    reference_values: [images]\n", extra=TDX_IMAGES)
    image_b = claims_of(Tee.TDX, INTEL, mr_td="CC" * 48, rtmr=["dd" * 48])
    decision = evaluate(rules, image_b, NOW)
    assert decision.allow
    clause = next(c for c in decision.explanation if c.kind == "reference_values")
    assert clause.note == "images: image B"
    assert clause.claim == "mr_td, rtmr.0"
    # Firmware of image A with the boot chain of image B: refused, and the nearest entry named.
    mixed = evaluate(rules, claims_of(Tee.TDX, INTEL, mr_td="aa" * 48, rtmr=["dd" * 48]), NOW)
    (failure,) = mixed.failures
    assert failure.note == "no entry matches; closest is images: image A, which differs in rtmr.0"
    assert failure.found == {"mr_td": "aa" * 48, "rtmr.0": "dd" * 48}
    assert failure.expected == ["images"]


def test_reference_values_absent_claim() -> None:
    rules = policy("  tdx:\n    reference_values: [images]\n", extra=TDX_IMAGES)
    (failure,) = evaluate(rules, claims_of(Tee.TDX, INTEL, mr_td="aa" * 48), NOW).failures
    assert failure.absent
    assert failure.note == "claim absent: rtmr.0"


def test_reference_sets_from_a_shared_file() -> None:
    rules = policy(
        "  nitro:\n    reference_values: [nitro-example-enclaves]\n",
        extra="references: [reference/example-images.yaml]\n",
        base_dir=POLICIES,
    )
    (ref,) = rules.reference_sets
    assert ref.name == "nitro-example-enclaves"
    assert ref.source == str(POLICIES / "reference/example-images.yaml")
    pcrs = dict(ref.entries[0].values)
    doc = {k.split(".")[1]: v for k, v in pcrs.items()}
    assert evaluate(rules, claims_of(Tee.NITRO, AWS, pcrs=doc), NOW).allow
    doc["2"] = "00" * 48
    assert not evaluate(rules, claims_of(Tee.NITRO, AWS, pcrs=doc), NOW).allow


# --- minimum TCB ----------------------------------------------------------------------------

SNP_TCB = "  snp:\n    minimum_tcb: {bootloader: 2, tee: 0, snp: 7, microcode: 68, fmc: 1}\n"


def test_snp_minimum_tcb_checks_each_reported_component() -> None:
    tcb = {"bootloader": 3, "tee": 0, "snp": 5, "microcode": 68, "fmc": None}
    decision = evaluate(policy(SNP_TCB), claims_of(Tee.SNP, reported_tcb=tcb), NOW)
    assert by_kind(decision, "minimum_tcb") == [
        ("reported_tcb.bootloader", ">=", True),
        ("reported_tcb.tee", ">=", True),
        ("reported_tcb.snp", ">=", False),
        ("reported_tcb.microcode", ">=", True),
        ("reported_tcb.fmc", ">=", False),
    ]
    snp, fmc = decision.failures
    assert (snp.expected, snp.found, snp.rule) == (7, 5, "$.admit.snp.minimum_tcb.snp")
    assert (fmc.found, fmc.absent, fmc.note) == (None, True, "claim absent")


INTEL_TCB = """\
  sgx:
    minimum_tcb:
      tcb_status: [UpToDate, SWHardeningNeeded]
      advisory_ids:
        accept: [INTEL-SA-00615, INTEL-SA-00657]
        refuse: [INTEL-SA-00657]
      tcb_evaluation_data_number: 14
      isv_svn: 2
"""


def test_intel_minimum_tcb() -> None:
    claims = claims_of(
        Tee.SGX,
        INTEL,
        tcb_status="SWHardeningNeeded",
        advisory_ids=["INTEL-SA-00615", "INTEL-SA-00657", "INTEL-SA-00828"],
        tcb_evaluation_data_number=14,
        isv_svn=1,
    )
    decision = evaluate(policy(INTEL_TCB), claims, NOW)
    assert by_kind(decision, "minimum_tcb") == [
        ("tcb_evaluation_data_number", ">=", True),
        ("isv_svn", ">=", False),
        ("tcb_status", "in", True),
        ("advisory_ids", "all in", False),
        ("advisory_ids", "none in", False),
    ]
    notes = [c.note for c in decision.failures]
    assert notes == [None, "not accepted: INTEL-SA-00828", "refused: INTEL-SA-00657"]


@pytest.mark.parametrize(
    ("status", "advisories", "allowed"),
    [
        ("UpToDate", [], True),
        ("SWHardeningNeeded", ["INTEL-SA-00615"], True),
        ("OutOfDate", [], False),
        ("Revoked", [], False),
    ],
)
def test_intel_tcb_status(status: str, advisories: list[str], allowed: bool) -> None:
    rules = policy(
        "  tdx:\n    minimum_tcb:\n      tcb_status: [UpToDate, SWHardeningNeeded]\n"
        "      advisory_ids: {accept: [INTEL-SA-00615]}\n"
    )
    claims = claims_of(Tee.TDX, INTEL, tcb_status=status, advisory_ids=advisories)
    assert evaluate(rules, claims, NOW).allow is allowed


def test_advisory_ids_absent_fails() -> None:
    rules = policy("  tdx:\n    minimum_tcb: {advisory_ids: {refuse: [INTEL-SA-00615]}}\n")
    (failure,) = evaluate(rules, claims_of(Tee.TDX, INTEL), NOW).failures
    assert (failure.claim, failure.absent) == ("advisory_ids", True)


@pytest.mark.parametrize(
    ("found", "what"),
    [
        ("INTEL-SA-00615", "a string"),
        ({"id": "INTEL-SA-00615"}, "an object"),
        (["INTEL-SA-00615", {"id": "INTEL-SA-00657"}], "a list with a non-string"),
        ([["INTEL-SA-00615"]], "a list with a non-string"),
        ([7], "a list with a non-string"),
    ],
)
@pytest.mark.parametrize(("rule", "op"), [("accept", "all in"), ("refuse", "none in")])
def test_advisory_ids_that_are_not_a_list_of_strings_fail(
    rule: str, op: str, found: object, what: str
) -> None:
    rules = policy(f"  tdx:\n    minimum_tcb: {{advisory_ids: {{{rule}: [INTEL-SA-00615]}}}}\n")
    claims = claims_of(Tee.TDX, INTEL, advisory_ids=found)
    decision = evaluate(rules, claims, NOW)
    (failure,) = decision.failures
    assert not decision.allow
    assert (failure.rule, failure.claim, failure.op, thaw(failure.found)) == (
        f"$.admit.tdx.minimum_tcb.advisory_ids.{rule}",
        "advisory_ids",
        op,
        found,
    )
    assert (failure.passed, failure.absent, failure.note) == (
        False,
        False,
        f"found {what}, not a list of advisory IDs",
    )


def test_evaluate_refuses_a_naive_now() -> None:
    rules = policy("  nitro: {}\n")
    with pytest.raises(ValueError, match=r"^now must be timezone-aware$") as caught:
        evaluate(rules, claims_of(Tee.NITRO, AWS), NOW.replace(tzinfo=None))
    assert str(caught.value) == "now must be timezone-aware"


# --- freshness ------------------------------------------------------------------------------

FRESH = "  any:\n    freshness: {max_evidence_age: 5m, max_collateral_age: 30d}\n"


@pytest.mark.parametrize(
    ("evidence_age", "collateral_age", "failed"),
    [
        (timedelta(minutes=5), timedelta(days=30), []),
        (timedelta(minutes=5, seconds=1), timedelta(days=1), ["evidence_time"]),
        (timedelta(0), timedelta(days=30, seconds=1), ["collateral_time"]),
        (timedelta(seconds=-60), timedelta(0), []),  # clock skew tolerated
        (timedelta(seconds=-61), timedelta(0), ["evidence_time"]),
    ],
)
def test_freshness(evidence_age: timedelta, collateral_age: timedelta, failed: list[str]) -> None:
    claims = claims_of(
        Tee.NITRO, AWS, evidence_time=NOW - evidence_age, collateral_time=NOW - collateral_age
    )
    decision = evaluate(policy(FRESH), claims, NOW)
    assert [c.claim for c in decision.failures] == failed


def test_freshness_with_unknown_time_fails_and_says_so() -> None:
    decision = evaluate(policy(FRESH), claims_of(Tee.SNP), NOW)
    evidence, collateral = decision.failures
    assert (evidence.claim, evidence.absent, evidence.found) == ("evidence_time", True, None)
    assert evidence.note == (
        "evidence time unknown: the snp evidence does not say when it was issued, "
        "so a maximum age cannot be met"
    )
    assert collateral.claim == "collateral_time"


def test_freshness_explains_the_age() -> None:
    claims = claims_of(Tee.NITRO, AWS, evidence_time=NOW - timedelta(minutes=2, seconds=3))
    rules = policy("  nitro:\n    freshness: {max_evidence_age: 90s}\n")
    (failure,) = evaluate(rules, claims, NOW).failures
    assert (failure.op, failure.expected, failure.note) == ("age <=", "90s", "age 2m 3s")
    assert failure.found == "2022-12-31T23:57:57+00:00"
