"""Every lint warning, acknowledgement, and the lint status of the shipped policies."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest

from broker.errors import PolicyError
from broker.evidence.claims import Signer, Tee
from broker.policy import Policy, lint, load_policy
from broker.policy.clauses import compile_getter
from broker.policy.lint import CODES, UNACKNOWLEDGEABLE, known_claim
from broker.policy.model import SIGNER_ATTRIBUTES

from .support import AMD_MILAN, POLICIES, REPO, claims_of, policy

SAFE_SNP = """\
  snp:
    signer: {origin: silicon-vendor}
    minimum_tcb: {snp: 5}
    require: [{claim: measurement, hex_equals: "%s"}]
""" % ("ab" * 48)


MEASUREMENT = {"claim": "measurement", "hex_equals": "ab" * 48}
OTHER_MEASUREMENT = {"claim": "measurement", "hex_in": ["cd" * 48]}
VMPL_0 = {"claim": "vmpl", "equals": 0}


def requiring(condition: object) -> str:
    """SAFE_SNP with ``require: [condition]`` (JSON is YAML) in place of its measurement pin."""
    start = SAFE_SNP.index("require: [") + len("require: [")
    return SAFE_SNP[:start] + json.dumps(condition) + "]\n"


def codes(rules: Policy) -> list[tuple[str, str]]:
    return [(w.code, w.rule) for w in lint(rules)]


# (admit block, expected (code, rule) warnings)
LINT_TABLE = [
    (SAFE_SNP, []),
    ("  {}\n", []),
    (
        "  snp:\n    signer: {origin: silicon-vendor}\n    minimum_tcb: {snp: 5}\n",
        [("no-measurement", "$.admit.snp")],
    ),
    (  # a measurement named only under `not` pins nothing
        SAFE_SNP.replace("require: [{", "require: [{not: {").replace("}]", "}}]"),
        [("no-measurement", "$.admit.snp")],
    ),
    (  # one branch admits any image at VMPL 0: the measurement is not pinned
        requiring({"any_of": [MEASUREMENT, VMPL_0]}),
        [("no-measurement", "$.admit.snp")],
    ),
    (  # every branch pins a measurement, one of them inside an all_of
        requiring({"any_of": [MEASUREMENT, {"all_of": [VMPL_0, OTHER_MEASUREMENT]}]}),
        [],
    ),
    (  # a pin inside nested all_of is required on every path
        requiring({"all_of": [VMPL_0, {"all_of": [MEASUREMENT]}]}),
        [],
    ),
    (  # a branch that only excludes a measurement pins nothing
        requiring({"any_of": [MEASUREMENT, {"not": OTHER_MEASUREMENT}]}),
        [("no-measurement", "$.admit.snp")],
    ),
    (  # nothing under `not` counts, not even a double negation
        requiring({"not": {"not": MEASUREMENT}}),
        [("no-measurement", "$.admit.snp")],
    ),
    (  # that a measurement exists pins nothing
        requiring({"claim": "measurement", "exists": True}),
        [("no-measurement", "$.admit.snp")],
    ),
    (
        SAFE_SNP + "    insecure_allow_debug: true\n",
        [("debug-allowed", "$.admit.snp.insecure_allow_debug")],
    ),
    (
        SAFE_SNP.replace("origin: silicon-vendor", "roots: [amd-ark-milan]"),
        [("infrastructure-signer", "$.admit.snp.signer")],
    ),
    (
        SAFE_SNP.replace("    signer: {origin: silicon-vendor}\n", ""),
        [("infrastructure-signer", "$.admit.snp")],
    ),
    (SAFE_SNP.replace("    minimum_tcb: {snp: 5}\n", ""), [("no-minimum-tcb", "$.admit.snp")]),
    (
        "  sgx:\n    signer: {origin: silicon-vendor}\n    minimum_tcb: {isv_svn: 2}\n"
        "    require: [{claim: mr_signer, hex_in: ['%s']}]\n" % ("cd" * 32),
        [("no-minimum-tcb", "$.admit.sgx.minimum_tcb")],
    ),
    (
        "  any:\n    signer: {origin: silicon-vendor}\n",
        [
            ("any-tee", "$.admit.any"),
            ("no-measurement", "$.admit.any"),
            ("no-minimum-tcb", "$.admit.any"),
        ],
    ),
    (SAFE_SNP + "    freshness: {max_evidence_age: 5m}\n", []),
    (
        SAFE_SNP.replace("require: [", "require: [{claim: reported_tcb.microcde, at_least: 1}, "),
        [("unknown-claim", "$.admit.snp.require[0].claim")],
    ),
    (
        SAFE_SNP.replace(
            "require: [",
            "require: [{any_of: [{claim: vmpl, equals: 0}, {not: {claim: rtmr.0, exists: true}}]},",
        ),
        [("unknown-claim", "$.admit.snp.require[0].any_of[1].not.claim")],
    ),
    (
        SAFE_SNP.replace(
            "origin: silicon-vendor", "origin: silicon-vendor, roots: [insecure-test-kit]"
        ),
        [("test-root-accepted", "$.admit.snp.signer.roots")],
    ),
    (
        "  nitro:\n    signer: {origin: infrastructure-provider}\n"
        "    require: [{claim: pcrs.0, hex_equals: '%s'}]\n" % ("ab" * 48),
        [("infrastructure-signer", "$.admit.nitro.signer")],
    ),
]


@pytest.mark.parametrize(("admit", "expected"), LINT_TABLE)
def test_lint(admit: str, expected: list[tuple[str, str]]) -> None:
    assert codes(policy(admit)) == expected


TDX_SAFE = """\
  tdx:
    signer: {origin: silicon-vendor}
    minimum_tcb: {tcb_status: [UpToDate]}
    require: [{claim: mr_td, hex_equals: "%s"}]
""" % ("ab" * 48)

TPM_SAFE = """\
  tpm:
    require: [{claim: tpm.pcrs.sha256.4, hex_equals: "%s"}]
""" % ("ab" * 32)

# (limits block, admit block, expected (code, rule) warnings)
LIMITS_TABLE = [
    ("limits: {max_releases: 1}\n", SAFE_SNP, []),
    ("limits: {max_releases: 3, once_per_instance: true}\n", TDX_SAFE, []),
    (  # an SNP report with a masked chip id names no instance
        "limits: {pin_to_first_instance: true}\n",
        SAFE_SNP,
        [("instance-unidentified", "$.admit.snp")],
    ),
    (  # nor does a plain vTPM's evidence, ever
        "limits: {once_per_instance: true}\n",
        TPM_SAFE,
        [("instance-unidentified", "$.admit.tpm"), ("infrastructure-signer", "$.admit.tpm")],
    ),
    (
        "limits: {max_releases: 1, once_per_instance: true}\n",
        TDX_SAFE,
        [("limits-redundant", "$.limits.max_releases")],
    ),
    (
        "limits: {once_per_instance: true, rate_per_instance: {releases: 2, per: 1h}}\n",
        TDX_SAFE,
        [("limits-redundant", "$.limits.rate_per_instance")],
    ),
]


@pytest.mark.parametrize(("limits", "admit", "expected"), LIMITS_TABLE)
def test_lint_limits(limits: str, admit: str, expected: list[tuple[str, str]]) -> None:
    assert codes(policy(admit, extra=limits)) == expected


def test_limits_warnings_are_acknowledged_in_limits_and_sections() -> None:
    rules = policy(
        SAFE_SNP + "    acknowledged_warnings: {instance-unidentified: chips are never masked}\n",
        extra="limits:\n  max_releases: 1\n  once_per_instance: true\n"
        "  acknowledged_warnings: {limits-redundant: kept for the reader}\n",
    )
    assert [(w.code, w.acknowledged) for w in lint(rules)] == [
        ("instance-unidentified", "chips are never masked"),
        ("limits-redundant", "kept for the reader"),
    ]


def test_every_code_is_exercised() -> None:
    seen = {code for _, expected in LINT_TABLE for code, _ in expected}
    seen |= {code for _, _, expected in LIMITS_TABLE for code, _ in expected}
    assert seen == set(CODES)


def test_acknowledged_warnings_keep_their_reason() -> None:
    rules = policy(
        SAFE_SNP.replace("    minimum_tcb: {snp: 5}\n", "")
        + "    insecure_allow_debug: true\n"
        + "    acknowledged_warnings: {no-minimum-tcb: test fleet only}\n"
    )
    (debug, tcb) = sorted(lint(rules), key=lambda w: w.code)
    # test-root-accepted can no more be acknowledged than debug-allowed: the schema refuses it
    with pytest.raises(PolicyError, match="'test-root-accepted' is not a known name"):
        policy(
            SAFE_SNP.replace("origin: silicon-vendor", "origin: silicon-vendor, roots: [t]")
            + "    acknowledged_warnings: {test-root-accepted: demo}\n"
        )
    assert (debug.code, debug.acknowledged) == ("debug-allowed", None)
    assert (tcb.code, tcb.acknowledged) == ("no-minimum-tcb", "test fleet only")
    assert tcb.to_json()["acknowledged"] == "test fleet only"


def test_known_claims() -> None:
    assert known_claim("snp", "reported_tcb.fmc")
    assert known_claim("snp", "signer.origin")
    assert not known_claim("snp", "reported_tcb")
    assert known_claim("tdx", "rtmr.3")
    assert not known_claim("tdx", "rtmr.4")
    # a flag set holds the bits its verifier decodes, no others: a misspelt flag is unknown
    assert known_claim("tdx", "td_attributes.sept_ve_disable")
    assert not known_claim("tdx", "td_attributes.anything_intel_adds")
    assert known_claim("nitro", "pcrs.31")
    assert known_claim("any", "mr_enclave")
    assert not known_claim("any", "nonsense")


HEX48 = "ab" * 48
NOT_PRODUCED = (
    "no {tee} verifier produces the claim '{claim}'; the condition will find it absent and fail"
)
ONLY_EXISTS = (
    "'{claim}' is {kind}, which only exists tests: the condition will fail; compare a member "
    "such as '{member}'"
)


CLAIM_CASES: list[tuple[str, dict[str, object], str | None]] = [
    # objects, lists and maps exist or not: `exists` reads them (docs/claims.md)
    ("snp", {"claim": "cpuid", "exists": True}, None),
    ("tdx", {"claim": "event_log", "exists": False}, None),
    ("tdx", {"claim": "td_attributes", "exists": True}, None),
    ("nitro", {"claim": "pcrs", "exists": True}, None),
    ("any", {"claim": "rtmr", "exists": True}, None),
    ("any", {"claim": "rtmr.0", "hex_equals": HEX48}, None),
    ("tdx", {"claim": "rtmr.3", "hex_equals": HEX48}, None),
    ("tdx", {"claim": "advisory_ids.0", "equals": "INTEL-SA-00615"}, None),
    # ... but no comparison can pass on them
    (
        "snp",
        {"claim": "reported_tcb", "at_least": 1},
        ONLY_EXISTS.format(
            claim="reported_tcb", kind="an object", member="reported_tcb.bootloader"
        ),
    ),
    (
        "tdx",
        {"claim": "rtmr", "hex_equals": HEX48},
        ONLY_EXISTS.format(claim="rtmr", kind="a list", member="rtmr.0"),
    ),
    (
        "tdx",
        {"claim": "event_log", "equals": 1},
        ONLY_EXISTS.format(claim="event_log", kind="a list", member="event_log.0.rtmr"),
    ),
    (
        "nitro",
        {"claim": "pcrs", "hex_in": [HEX48]},
        ONLY_EXISTS.format(claim="pcrs", kind="a map", member="pcrs.0"),
    ),
    (
        "any",
        {"claim": "td_attributes", "equals": True},
        ONLY_EXISTS.format(claim="td_attributes", kind="an object", member="td_attributes.debug"),
    ),
    # signer is read attribute by attribute, never whole
    (
        "snp",
        {"claim": "signer", "exists": True},
        "conditions read 'signer' only by its members (such as 'signer.vendor'); the "
        "condition will find it absent",
    ),
    # paths no verifier of the TEE produces
    (
        "tdx",
        {"claim": "rtmr.4", "exists": True},
        NOT_PRODUCED.format(tee="tdx", claim="rtmr.4"),
    ),
    (
        "nitro",
        {"claim": "pcrs.08", "hex_equals": HEX48},
        NOT_PRODUCED.format(tee="nitro", claim="pcrs.08"),
    ),
    (
        "tdx",
        {"claim": "td_attributes.sept_ve_disabled", "equals": True},
        NOT_PRODUCED.format(tee="tdx", claim="td_attributes.sept_ve_disabled"),
    ),
    ("sgx", {"claim": "mr_td", "exists": True}, NOT_PRODUCED.format(tee="sgx", claim="mr_td")),
    (
        "any",
        {"claim": "nonsense", "exists": True},
        NOT_PRODUCED.format(tee="any", claim="nonsense"),
    ),
]


def _case_id(tee: str, condition: dict[str, object]) -> str:
    operator = next(key for key in condition if key != "claim")
    return f"{tee}-{condition['claim']}-{operator}"


@pytest.mark.parametrize(
    ("tee", "condition", "message"),
    CLAIM_CASES,
    ids=[_case_id(tee, condition) for tee, condition, _ in CLAIM_CASES],
)
def test_unknown_claim_names_why_the_condition_cannot_read_its_claim(
    tee: str, condition: dict[str, object], message: str | None
) -> None:
    section = f"  {tee}:\n    signer: {{origin: silicon-vendor}}\n"
    rules = policy(f"{section}    require: [{json.dumps(condition)}]\n")
    found = [w for w in lint(rules) if w.code == "unknown-claim"]
    expected = [] if message is None else [(f"$.admit.{tee}.require[0].claim", message)]
    assert [(w.rule, w.message) for w in found] == expected


def test_signer_claims_are_the_signer_attributes() -> None:
    # one set, read off broker.evidence.claims.Signer, serves the linter and the evaluator
    assert {f.name for f in fields(Signer)} == SIGNER_ATTRIBUTES
    assert {"vendor", "origin", "root", "key", "product"} == SIGNER_ATTRIBUTES
    for tee in ("snp", "tdx", "sgx", "nitro", "any"):
        assert all(known_claim(tee, f"signer.{name}") for name in SIGNER_ATTRIBUTES)
        assert not known_claim(tee, "signer.chain")
        assert not known_claim(tee, "signer")
    claims = claims_of(Tee.SNP, AMD_MILAN)
    found = {name: compile_getter(f"signer.{name}")(claims) for name in SIGNER_ATTRIBUTES}
    assert found == {
        "vendor": "amd",
        "origin": "silicon-vendor",
        "root": "amd-ark-milan",
        "key": "vcek",
        "product": "Milan",
    }


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("default.yaml", []),
        ("snp-production-disk-key.yaml", []),
        ("tdx-production.yaml", []),
        ("sgx-enclave-data-key.yaml", []),
        ("nitro-enclave.yaml", [("infrastructure-signer", True)]),
        ("azure-cvm-disk-key.yaml", [("infrastructure-signer", True)]),
        ("gce-shielded-vm.yaml", [("infrastructure-signer", True)]),
        ("insecure-debug-example.yaml", [("debug-allowed", False)]),
        (
            "insecure-demo-simulated-nitro.yaml",
            [("infrastructure-signer", True), ("test-root-accepted", False)],
        ),
        (
            "insecure-demo-simulated-snp.yaml",
            [
                ("test-root-accepted", False),
                ("infrastructure-signer", True),
                ("test-root-accepted", False),
            ],
        ),
    ],
)
def test_shipped_policies_warn_only_where_intended(
    name: str, expected: list[tuple[str, bool]]
) -> None:
    warnings = lint(load_policy(POLICIES / name))
    assert [(w.code, w.acknowledged is not None) for w in warnings] == expected


def test_docs_list_every_code_and_which_cannot_be_acknowledged() -> None:
    text = (REPO / "docs" / "policies.md").read_text()
    section = text.split("## Lint warnings")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == list(CODES)
    unacknowledgeable = " and ".join(f"`{code}`" for code in sorted(UNACKNOWLEDGEABLE))
    assert f"\n{unacknowledgeable} cannot be acknowledged" in section
