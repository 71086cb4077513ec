"""Property: for random claims, ``allow`` is true only if every required clause passes, and
the explanation lists exactly the clauses that fail (checked against an independent oracle)."""

from __future__ import annotations

import json
from typing import Any

import yaml
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
#: The TEE sections each shipped policy names, read from its text, not through the loader.
SHIPPED_ADMIT = {
    p.stem: set(yaml.safe_load(p.read_text())["admit"]) for p in POLICIES.glob("*.yaml")
}
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
    """Arbitrary (even ill-typed) claims never raise, and are never admitted: every shipped
    policy either has no section for them or pins a 32- or 48-byte measurement (the lint
    tests show no shipped section lacks one), and no generated value is longer than 4 hex
    digits. The tee clause passes exactly when the policy text admits the TEE."""
    decision = evaluate(rules, claims_of(tee, debug=debug, **fields), NOW)
    admitted = SHIPPED_ADMIT[rules.name]
    assert not decision.allow
    assert decision.failures
    tee_clause = decision.explanation[0]
    assert (tee_clause.kind, tee_clause.passed) == (
        "tee",
        tee.value in admitted or "any" in admitted,
    )
    assert decision.allow == all(clause.passed for clause in decision.explanation)
    decision.to_json()


# --- conditions whose truth is known by construction ----------------------------------------
#
# Each leaf is a comparison generated together with the claim value that makes it true (T),
# false (F) or undetermined (U: the claim is absent or null). The policy's require list is
# built from trees of such leaves, and the expected decision is computed with Kleene's
# three-valued logic (not U = U; F and U = F; T or U = T), which docs/policies.md gives as
# the semantics of absent claims: a clause passes only when it is T.

T, F, U = "T", "F", "U"
ABSENT: Any = object()

Leaf = tuple[str, dict[str, Any], Any, str]
"""("leaf", {operator: value}, claim value or ABSENT, truth)"""


@st.composite
def leaves(draw: st.DrawFn) -> Leaf:
    kind = draw(st.sampled_from(["equals", "bool", "in", "order", "hex", "hex_in", "exists"]))
    truth = draw(st.sampled_from([T, F] if kind == "exists" else [T, F, U]))
    n, k = draw(st.integers(-5, 300)), draw(st.integers(0, 5))
    text = draw(st.sampled_from(["UpToDate", "OutOfDate", "a", "b-c"]))
    digest = draw(st.binary(min_size=1, max_size=8)).hex()
    wrong_type = draw(st.booleans())  # a false comparison by type rather than by value
    if kind == "exists":
        wanted = draw(st.booleans())
        present = (truth == T) == wanted
        return ("leaf", {"exists": wanted}, n if present else ABSENT, truth)
    if truth == U:
        op = draw(st.sampled_from(["equals", "at_least", "less_than", "hex_equals"]))
        value: Any = {"equals": n, "at_least": n, "less_than": n, "hex_equals": digest}[op]
        return ("leaf", {op: value}, draw(st.sampled_from([ABSENT, None])), U)
    good = truth == T
    if kind == "equals":
        found: Any = n if good else (str(n) if wrong_type else n + 1 + k)
        return ("leaf", {"equals": n}, found, truth)
    if kind == "bool":
        flag = draw(st.booleans())
        found = flag if good else (int(flag) if wrong_type else not flag)
        return ("leaf", {"equals": flag}, found, truth)
    if kind == "in":
        accepted = [text, f"{text}-x"]
        found = accepted[k % 2] if good else (f"{text}-y" if not wrong_type else len(text))
        return ("leaf", {"in": accepted}, found, truth)
    if kind == "order":
        op = draw(st.sampled_from(["at_least", "greater_than", "at_most", "less_than"]))
        low = op in ("at_least", "greater_than")  # true when found is above the bound
        strict = op in ("greater_than", "less_than")
        above, below = n + k + (1 if strict else 0), n - k - (1 if strict else 0)
        if good:
            found = above if low else below
        else:
            found = (
                str(n)
                if wrong_type
                else (n - k - (0 if strict else 1) if low else n + k + (0 if strict else 1))
            )
        return ("leaf", {op: n}, found, truth)
    if kind == "hex":
        other = digest[:-2] + ("00" if digest[-2:] != "00" else "01")
        found = digest.upper() if good else (int(k) if wrong_type else other)
        return ("leaf", {"hex_equals": digest}, found, truth)
    accepted = [digest, digest + "ff"]
    found = accepted[k % 2].upper() if good else digest + "fe"
    return ("leaf", {"hex_in": accepted}, found, truth)


trees = st.recursive(
    leaves(),
    lambda inner: (
        st.tuples(st.just("all_of"), st.lists(inner, min_size=1, max_size=3))
        | st.tuples(st.just("any_of"), st.lists(inner, min_size=1, max_size=3))
        | st.tuples(st.just("not"), inner)
    ),
    max_leaves=8,
)


def kleene(tree: Any) -> str:
    if tree[0] == "leaf":
        return str(tree[3])
    if tree[0] == "not":
        return {T: F, F: T, U: U}[kleene(tree[1])]
    values = [kleene(child) for child in tree[1]]
    win, lose = (F, T) if tree[0] == "all_of" else (T, F)
    if win in values:
        return win
    return U if U in values else lose


def render(tree: Any, fields: dict[str, Any]) -> dict[str, Any]:
    """The condition's policy JSON; each leaf reads its own claim, set in ``fields``."""
    if tree[0] == "leaf":
        name = f"c{len(fields)}"
        fields[name] = tree[2]
        return {"claim": name, **tree[1]}
    if tree[0] == "not":
        return {"not": render(tree[1], fields)}
    return {tree[0]: [render(child, fields) for child in tree[1]]}


@settings(max_examples=400, deadline=None)
@given(
    st.lists(trees, min_size=1, max_size=3),
    st.sampled_from(["snp", "any"]),
    st.sampled_from(Tee),
    st.booleans(),
)
def test_decision_is_the_known_truth_of_generated_conditions(
    require: list[Any], section: str, tee: Tee, debug: bool
) -> None:
    fields: dict[str, Any] = {}
    conditions = [render(tree, fields) for tree in require]
    document = {
        "format": "keybroker-policy/1",
        "name": "generated",
        "version": 1,
        "admit": {section: {"require": conditions}},
    }
    rules = load_policy_text(json.dumps(document), is_json=True)
    present = {name: value for name, value in fields.items() if value is not ABSENT}
    decision = evaluate(rules, claims_of(tee, debug=debug, **present), NOW)

    truths = [kleene(tree) for tree in require]
    admitted = section == "any" or tee is Tee.SNP
    expected: set[str] = set()
    if not admitted:
        expected.add("$.admit")
    else:
        if debug:
            expected.add(f"$.admit.{section}")
        expected |= {f"$.admit.{section}.require[{i}]" for i, t in enumerate(truths) if t != T}
    assert {clause.rule for clause in decision.failures} == expected
    assert decision.allow is (not expected)
    if admitted:
        required = [c for c in decision.explanation if c.kind == "require"]
        assert [(c.passed, c.absent) for c in required] == [(t == T, t == U) for t in truths]


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
