"""The shipped example policies on claims the real verifiers produce from tests/vectors.

Each piece of evidence is verified at the instant its MANIFEST.md gives, exactly as the
broker and ``keybroker policy eval --tee`` would, and the example policy is evaluated at that
instant. The worked examples of docs/policies.md make the same claims; the last tests run the
commands shown there and compare their output with the guide.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from broker.cli import main
from broker.evidence.claims import Claims, Tee
from broker.evidence.registry import verifier_for
from broker.policy import Policy, evaluate, load_policy, load_policy_text
from broker.policy.evaluate import Decision, describe
from tests.unit.dcap.vectors import (
    DEBUG_TD_QUOTE,
    JUNE_2023,
    SIGNAL_2023_DIR,
    SIGNAL_2023_NOW,
    SIGNAL_2023_QUOTE,
    SPR_DIR,
    signal_collateral,
    spr_collateral,
)
from tests.unit.nitro.vectors import DEBUG, GA, PRODUCTION, RealDocument

from .support import GO_SEV_GUEST_PASSES_IN_PRODUCTION, POLICIES, REPO

SNP = REPO / "tests" / "vectors" / "snp"
GO_SEV_GUEST = SNP / "go-sev-guest-milan-v2"
TRUSTEE_SNP = SNP / "trustee-milan-vcek"
#: go-sev-guest-milan-v2/MANIFEST.md: any instant in the VCEK's 2022-09-24..2029-09-24
#: window; the guide's worked example uses this one.
GO_SEV_GUEST_AT = datetime(2023, 1, 1, tzinfo=UTC)
#: trustee-milan-vcek/MANIFEST.md: any instant in the VCEK's 2023-01-24..2030-01-24 window.
TRUSTEE_SNP_AT = datetime(2024, 1, 1, tzinfo=UTC)

SNP_PRODUCTION = "snp-production-disk-key.yaml"
DEBUG_REFUSED = (
    "debug == false, found true (debug mode lets the host read the guest's memory; refused "
    "unless the section sets insecure_allow_debug: true)"
)


def verified(tee: Tee, evidence: bytes, collateral: Mapping[str, bytes], at: datetime) -> Claims:
    return verifier_for(tee).verify(evidence, collateral, now=at)


def decide(policy: str | Policy, claims: Claims, at: datetime) -> Decision:
    rules = load_policy(POLICIES / policy) if isinstance(policy, str) else policy
    return evaluate(rules, claims, at)


def go_sev_guest() -> Claims:
    vcek = (GO_SEV_GUEST / "vcek.der").read_bytes()
    evidence = (GO_SEV_GUEST / "attestation.bin").read_bytes()
    return verified(Tee.SNP, evidence, {"vcek": vcek}, GO_SEV_GUEST_AT)


def debug_td() -> Claims:
    """trustee-tdx-v4-debug with the June 2023 collateral of go-tdx-guest-spr-v4."""
    return verified(Tee.TDX, DEBUG_TD_QUOTE.read_bytes(), spr_collateral(), JUNE_2023)


def nitro(document: RealDocument) -> Claims:
    return verified(Tee.NITRO, document.data, {}, document.at)


def passed(decision: Decision) -> list[tuple[str, str]]:
    return [(clause.kind, clause.claim) for clause in decision.explanation if clause.passed]


# --- SNP ---------------------------------------------------------------------------------------


def test_snp_production_refuses_the_debug_go_sev_guest_report_and_explains_why() -> None:
    claims = go_sev_guest()
    assert claims.debug is True
    decision = decide(SNP_PRODUCTION, claims, GO_SEV_GUEST_AT)
    assert not decision.allow
    assert [describe(clause) for clause in decision.failures] == [DEBUG_REFUSED]
    assert decision.failures[0].rule == "$.admit.snp"
    # The report meets every other rule: debug is the whole reason.
    assert passed(decision) == GO_SEV_GUEST_PASSES_IN_PRODUCTION
    error = decision.to_error()
    assert error.detail == f"policy snp-production-disk-key v1 denied: {DEBUG_REFUSED}"


def test_listing_its_measurement_and_tcb_admits_it_once_debug_is_allowed() -> None:
    decision = decide("insecure-debug-example.yaml", go_sev_guest(), GO_SEV_GUEST_AT)
    assert decision.allow
    debug = next(clause for clause in decision.explanation if clause.kind == "debug")
    assert (debug.found, debug.note) == (True, "debug admitted by insecure_allow_debug: true")
    reference = next(c for c in decision.explanation if c.kind == "reference_values")
    assert (
        reference.note == "go-sev-guest-test-vm: go-sev-guest Milan test VM (launched with DEBUG)"
    )


def test_the_insecure_example_still_needs_the_measurement() -> None:
    """Allowing debug admits nothing else: another measurement is still refused."""
    claims = go_sev_guest()
    other = replace(claims, fields={**claims.fields, "measurement": "00" * 48})
    decision = decide("insecure-debug-example.yaml", other, GO_SEV_GUEST_AT)
    assert [(clause.kind, clause.found) for clause in decision.failures] == [
        ("reference_values", "00" * 48)
    ]


def test_snp_production_admits_the_trustee_report_through_its_id_block_entry() -> None:
    vcek = (TRUSTEE_SNP / "test-vcek.der").read_bytes()
    evidence = (TRUSTEE_SNP / "test-report.bin").read_bytes()
    claims = verified(Tee.SNP, evidence, {"vcek": vcek}, TRUSTEE_SNP_AT)
    assert claims.debug is False
    decision = decide(SNP_PRODUCTION, claims, TRUSTEE_SNP_AT)
    assert decision.allow, [describe(clause) for clause in decision.failures]
    reference = next(c for c in decision.explanation if c.kind == "reference_values")
    assert reference.claim == "measurement, id_key_digest, family_id, image_id"
    assert reference.note == (
        "snp-example-images: trustee Milan test VM (launched with an ID block)"
    )
    tcb = [(c.claim, c.found) for c in decision.explanation if c.kind == "minimum_tcb"]
    assert tcb == [
        ("reported_tcb.bootloader", 3),
        ("reported_tcb.tee", 0),
        ("reported_tcb.snp", 8),
        ("reported_tcb.microcode", 115),
    ]


# --- TDX and SGX -------------------------------------------------------------------------------


def test_tdx_production_refuses_the_debug_td_for_debug_only() -> None:
    claims = debug_td()
    assert (claims.debug, claims.lookup("tcb_status")) == (True, "UpToDate")
    decision = decide("tdx-production.yaml", claims, JUNE_2023)
    assert [describe(clause) for clause in decision.failures] == [DEBUG_REFUSED]
    assert passed(decision) == [
        ("tee", "tee"),
        ("signer", "signer.origin"),
        ("signer", "signer.root"),
        ("reference_values", "mr_td, rtmr.0, rtmr.1"),
        ("minimum_tcb", "tcb_evaluation_data_number"),
        ("minimum_tcb", "tcb_status"),
        ("freshness", "collateral_time"),
        ("require", "td_attributes.sept_ve_disable"),
    ]
    collateral = next(c for c in decision.explanation if c.claim == "collateral_time")
    assert collateral.note == "age 22d 17h 35m 1s"


def test_sgx_example_admits_the_signal_enclave_with_its_accepted_advisories() -> None:
    quote = SIGNAL_2023_QUOTE.read_bytes()
    claims = verified(Tee.SGX, quote, signal_collateral(SIGNAL_2023_DIR), SIGNAL_2023_NOW)
    decision = decide("sgx-enclave-data-key.yaml", claims, SIGNAL_2023_NOW)
    assert decision.allow, [describe(clause) for clause in decision.failures]
    assert claims.lookup("tcb_status") == "SWHardeningNeeded"

    # docs/policies.md: remove one advisory from `accept` and the denial names the other.
    text = (POLICIES / "sgx-enclave-data-key.yaml").read_text()
    narrowed = text.replace("accept: [INTEL-SA-00615, INTEL-SA-00657]", "accept: [INTEL-SA-00615]")
    assert narrowed != text
    rules = load_policy_text(narrowed, source="narrowed.yaml", base_dir=POLICIES)
    assert [describe(clause) for clause in decide(rules, claims, SIGNAL_2023_NOW).failures] == [
        "advisory_ids all in [INTEL-SA-00615], found [INTEL-SA-00615, INTEL-SA-00657] "
        "(not accepted: INTEL-SA-00657)"
    ]


# --- Nitro -------------------------------------------------------------------------------------


def test_nitro_example_admits_the_production_document_whose_pcrs_it_lists() -> None:
    decision = decide("nitro-enclave.yaml", nitro(PRODUCTION), PRODUCTION.at)
    assert decision.allow, [describe(clause) for clause in decision.failures]
    reference = next(c for c in decision.explanation if c.kind == "reference_values")
    assert reference.note == "nitro-example-enclaves: Evervault production enclave, October 2022"
    fresh = next(c for c in decision.explanation if c.kind == "freshness")
    assert fresh.note == "age 17s"


@pytest.mark.parametrize("document", [DEBUG, GA], ids=lambda d: d.name)
def test_nitro_example_refuses_the_debug_documents(document: RealDocument) -> None:
    claims = nitro(document)
    assert claims.debug is True
    decision = decide("nitro-enclave.yaml", claims, document.at)
    failures = decision.failures
    assert [clause.kind for clause in failures] == ["debug", "reference_values"]
    assert describe(failures[0]) == DEBUG_REFUSED
    assert failures[1].note == (
        "no entry matches; closest is nitro-example-enclaves: Evervault production enclave, "
        "October 2022, which differs in pcrs.0, pcrs.1, pcrs.2"
    )


SILICON_VENDOR_ONLY = """\
format: keybroker-policy/1
name: silicon-vendor-only
version: 1
admit:
  nitro:
    signer:
      origin: silicon-vendor
    insecure_allow_debug: true
"""


@pytest.mark.parametrize("document", [PRODUCTION, DEBUG, GA], ids=lambda d: d.name)
def test_a_silicon_vendor_policy_refuses_every_nitro_document_and_says_why(
    document: RealDocument,
) -> None:
    rules = load_policy_text(SILICON_VENDOR_ONLY, source="silicon-vendor-only.yaml")
    decision = decide(rules, nitro(document), document.at)
    assert [describe(clause) for clause in decision.failures] == [
        "signer.origin == silicon-vendor, found infrastructure-provider"
    ]


# --- the guide's worked examples, run as shown ------------------------------------------------

GUIDE = REPO / "docs" / "policies.md"


def worked_examples() -> list[tuple[str, list[str], str]]:
    """(command, argv, shown output) of each ``keybroker policy eval`` console block in the
    guide's "Worked examples" section; the output is empty when the guide shows none."""
    text = GUIDE.read_text()
    section = text[text.index("## Worked examples") : text.index("## Reference")]
    examples = []
    for block in re.findall(r"```console\n(.*?)```", section, flags=re.DOTALL):
        command, _, output = re.sub(r"\\\n\s*", "", block).partition("\n")
        argv = shlex.split(command.removeprefix("$ "))
        assert argv[:3] == ["keybroker", "policy", "eval"], command
        examples.append((command, argv[1:], output))
    return examples


def _example_id(argv: list[str]) -> str:
    """``<policy>-<evidence>``: which worked example a test case runs."""
    evidence = argv[argv.index("--tee") + 2]
    return f"{Path(argv[2]).stem}-{Path(evidence).name}"


@pytest.mark.parametrize(
    ("command", "argv", "shown"),
    [pytest.param(*example, id=_example_id(example[1])) for example in worked_examples()],
)
def test_the_guide_shows_what_policy_eval_prints(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    argv: list[str],
    shown: str,
) -> None:
    monkeypatch.chdir(REPO)  # the guide's paths are relative to the repository
    status = main(argv)
    out, err = capsys.readouterr()
    assert status in (0, 1), err
    assert err == ""
    if shown:
        assert out == shown, command
    expected = "DENY" if status else "ALLOW"
    assert f"decision  {expected}" in out


def test_the_guide_has_a_runnable_example_per_tee() -> None:
    examples = worked_examples()
    tees = [argv[argv.index("--tee") + 1] for _, argv, _ in examples]
    assert sorted(set(tees)) == ["nitro", "sgx", "snp", "tdx"]
    # Reproducible: each names the instant its manifest gives.
    assert all("--at" in argv for _, argv, _ in examples)
    assert sum(1 for _, _, shown in examples if shown) >= 3


def test_policy_eval_cli_on_the_real_debug_td_prints_the_explanation(
    capsys: pytest.CaptureFixture[str],
) -> None:
    policy = str(POLICIES / "tdx-production.yaml")
    quote, collateral = str(DEBUG_TD_QUOTE), str(SPR_DIR)
    at = "2023-07-01T01:00:00Z"
    status = main(
        ["policy", "eval", policy, "--tee", "tdx", quote, "--collateral", collateral, "--at", at]
    )
    out = capsys.readouterr().out
    assert status == 1
    assert "evidence  tdx, signed by intel (silicon-vendor, root intel-sgx-root-ca, key pck)" in out
    assert "decision  DENY: 1 of 9 clauses failed" in out
    table = [line.split() for line in out.splitlines()]
    assert ["FAIL", "debug", "debug", "==", "false", "true"] in table
    assert ["PASS", "minimum_tcb", "tcb_status", "in", "UpToDate", "UpToDate"] in table
    assert f"Denied because:\n  1. {DEBUG_REFUSED}\n     rule: $.admit.tdx\n" in out
