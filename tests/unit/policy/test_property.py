"""Property: for random claims, ``allow`` is true only if every required clause passes, and
the explanation lists exactly the clauses that fail (checked against an independent oracle)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from broker.errors import PolicyError
from broker.evidence.claims import Signer, SignerOrigin, Tee
from broker.policy import evaluate, load_policy, load_policy_text

from .support import NOW, POLICIES, claims_of, policy

GOOD = "ab" * 48
MINIMUMS = {"bootloader": 2, "snp": 5, "microcode": 68}
RULES = policy(
    """\
  snp:
    signer: {origin: silicon-vendor}
    reference_values: [images]
    minimum_tcb: {bootloader: 2, snp: 5, microcode: 68}
    require:
      - {claim: vmpl, equals: 0}
      - any_of: [{claim: guest_svn, at_least: 2}, {claim: policy.single_socket, equals: true}]
      - not: {claim: policy.migrate_ma, equals: true}
""",
    extra=f"reference_values:\n  images:\n    tee: snp\n    values: [{{measurement: {GOOD}}}]\n",
)

maybe_int = st.one_of(st.none(), st.integers(min_value=0, max_value=255))
maybe_bool = st.one_of(st.none(), st.booleans())


@st.composite
def snp_claims(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "debug": draw(st.booleans()),
        "origin": draw(st.sampled_from(SignerOrigin)),
        "root": draw(st.sampled_from(["amd-ark-milan", "insecure-test-cli-0"])),
        "measurement": draw(st.sampled_from([None, GOOD, GOOD.upper(), "cd" * 48, "ab"])),
        "tcb": {k: draw(maybe_int) for k in ("bootloader", "tee", "snp", "microcode")},
        "vmpl": draw(st.one_of(st.none(), st.integers(0, 3))),
        "guest_svn": draw(maybe_int),
        "single_socket": draw(maybe_bool),
        "migrate_ma": draw(maybe_bool),
    }


def expected_failures(c: dict[str, Any]) -> set[str]:
    """The rules that must fail, derived from the policy text by hand."""
    failed = set()
    if c["origin"] is not SignerOrigin.SILICON_VENDOR:
        failed.add("$.admit.snp.signer.origin")
    if c["root"].startswith("insecure-test-"):
        failed.add("$.admit.snp.signer")
    if c["debug"]:
        failed.add("$.admit.snp")
    if c["measurement"] is None or c["measurement"].lower() != GOOD:
        failed.add("$.admit.snp.reference_values")
    for key, minimum in MINIMUMS.items():
        if c["tcb"][key] is None or c["tcb"][key] < minimum:
            failed.add(f"$.admit.snp.minimum_tcb.{key}")
    if c["vmpl"] != 0:
        failed.add("$.admit.snp.require[0]")
    if not ((c["guest_svn"] or 0) >= 2 or c["single_socket"] is True):
        failed.add("$.admit.snp.require[1]")
    if c["migrate_ma"] is not False:  # absent: undetermined, which fails even under `not`
        failed.add("$.admit.snp.require[2]")
    return failed


def build(c: dict[str, Any]) -> Any:
    fields: dict[str, Any] = {
        "reported_tcb": c["tcb"],
        "policy": {"single_socket": c["single_socket"], "migrate_ma": c["migrate_ma"]},
        "vmpl": c["vmpl"],
        "guest_svn": c["guest_svn"],
    }
    if c["measurement"] is not None:
        fields["measurement"] = c["measurement"]
    signer = Signer("amd", c["origin"], c["root"], "vcek", "Milan")
    return claims_of(Tee.SNP, signer, debug=c["debug"], **fields)


@settings(max_examples=300, deadline=None)
@given(snp_claims())
def test_allow_only_if_every_clause_passes(c: dict[str, Any]) -> None:
    decision = evaluate(RULES, build(c), NOW)
    expected = expected_failures(c)
    assert {clause.rule for clause in decision.failures} == expected
    assert decision.allow == (not expected)
    assert decision.allow == all(clause.passed for clause in decision.explanation)
    assert decision.failures == tuple(cl for cl in decision.explanation if not cl.passed)


SHIPPED = [load_policy(p) for p in sorted(POLICIES.glob("*.yaml"))]
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 300), st.text("abcdef0123", max_size=4)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("0123"), inner),
    max_leaves=6,
)
field_names = st.sampled_from(
    [
        "measurement",
        "reported_tcb",
        "vmpl",
        "policy",
        "mr_td",
        "rtmr",
        "tcb_status",
        "advisory_ids",
        "isv_svn",
        "isv_prod_id",
        "mr_enclave",
        "pcrs",
        "digest",
        "td_attributes",
    ]
)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(SHIPPED),
    st.sampled_from(Tee),
    st.booleans(),
    st.dictionaries(field_names, json_values, max_size=8),
)
def test_any_claims_any_policy(rules: Any, tee: Tee, debug: bool, fields: dict[str, Any]) -> None:
    """Arbitrary (even ill-typed) claims never raise, and allow == every clause passed."""
    decision = evaluate(rules, claims_of(tee, debug=debug, **fields), NOW)
    assert decision.allow == all(clause.passed for clause in decision.explanation)
    assert decision.explanation[0].kind == "tee"
    decision.to_json()


# --- malformed policies raise PolicyError and nothing else ----------------------------------

VALID_TEXT = (POLICIES / "snp-production-disk-key.yaml").read_text()
VOCABULARY = [
    "format",
    "keybroker-policy/1",
    "keybroker-references/1",
    "name",
    "version",
    "admit",
    "snp",
    "tdx",
    "any",
    "signer",
    "origin",
    "silicon-vendor",
    "reference_values",
    "values",
    "tee",
    "measurement",
    "minimum_tcb",
    "snp",
    "tcb_status",
    "advisory_ids",
    "accept",
    "require",
    "claim",
    "equals",
    "in",
    "at_least",
    "hex_equals",
    "exists",
    "all_of",
    "any_of",
    "not",
    "reason",
    "freshness",
    "max_evidence_age",
    "5m",
    "insecure_allow_debug",
    "acknowledged_warnings",
    "no-measurement",
    "label",
    "rtmr.0",
    "pcrs.0",
    "ab" * 48,
]
documents = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2, 300), st.sampled_from(VOCABULARY)),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(VOCABULARY), inner, max_size=4)
    ),
    max_leaves=12,
)


def loads_or_policy_error(text: str, *, is_json: bool = False) -> None:
    problems: list[dict[str, Any]] = []
    try:
        load_policy_text(text, is_json=is_json)
    except PolicyError as exc:
        problems = exc.problems or [{"message": "", "path": ""}]
    assert all(p["message"] and p["path"].startswith("$") for p in problems)


@settings(max_examples=150, deadline=None)
@given(documents)
def test_any_json_document_loads_or_raises_policy_error(doc: Any) -> None:
    loads_or_policy_error(json.dumps(doc), is_json=True)


@settings(max_examples=150, deadline=None)
@given(
    st.integers(0, len(VALID_TEXT)),
    st.integers(0, 40),
    st.text(":-[]{}#&*!|>'\"\n\t %@`,?x0\x00", max_size=8),
)
def test_mutated_yaml_loads_or_raises_policy_error(at: int, cut: int, insert: str) -> None:
    loads_or_policy_error(VALID_TEXT[:at] + insert + VALID_TEXT[at + cut :])
