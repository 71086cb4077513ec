"""Every operator and every composition, as tables: condition, claims -> outcome."""

from __future__ import annotations

from typing import Any

import pytest

from broker.evidence.claims import Tee
from broker.policy import evaluate
from broker.policy.evaluate import ClauseResult

from .support import NOW, claims_of, one_condition

FIELDS: dict[str, Any] = {
    "vmpl": 0,
    "guest_svn": 3,
    "reported_tcb": {"bootloader": 2, "tee": 0, "snp": 5, "microcode": 68, "fmc": None},
    "measurement": "ab" * 48,
    "policy": {"debug": False, "smt": True},
    "rtmr": ["00" * 48, "11" * 48],
    "pcrs": {"0": "cd" * 48},
    "tcb_status": "UpToDate",
    "name": "Milan",
}


def result(condition: str, **fields: Any) -> ClauseResult:
    claims = claims_of(Tee.SNP, **{**FIELDS, **fields})
    return evaluate(one_condition(condition), claims, NOW).explanation[-1]


# (condition, passed, absent)
OPERATOR_TABLE = [
    # equals: strings, integers, booleans; booleans never equal 0/1
    ("{claim: vmpl, equals: 0}", True, False),
    ("{claim: vmpl, equals: 1}", False, False),
    ("{claim: name, equals: Milan}", True, False),
    ("{claim: name, equals: milan}", False, False),
    ("{claim: policy.smt, equals: true}", True, False),
    ("{claim: policy.debug, equals: 0}", False, False),
    ("{claim: vmpl, equals: false}", False, False),
    ("{claim: signer.origin, equals: silicon-vendor}", True, False),
    ("{claim: tee, equals: snp}", True, False),
    ("{claim: debug, equals: false}", True, False),
    # in
    ("{claim: tcb_status, in: [UpToDate, SWHardeningNeeded]}", True, False),
    ("{claim: tcb_status, in: [OutOfDate]}", False, False),
    ("{claim: vmpl, in: [0, 1]}", True, False),
    ("{claim: vmpl, in: [2, 3]}", False, False),
    ("{claim: policy.smt, in: [1]}", False, False),
    # numeric comparisons, per TCB component and SVN
    ("{claim: reported_tcb.snp, at_least: 5}", True, False),
    ("{claim: reported_tcb.snp, at_least: 6}", False, False),
    ("{claim: reported_tcb.snp, greater_than: 4}", True, False),
    ("{claim: reported_tcb.snp, greater_than: 5}", False, False),
    ("{claim: guest_svn, at_most: 3}", True, False),
    ("{claim: guest_svn, at_most: 2}", False, False),
    ("{claim: guest_svn, less_than: 4}", True, False),
    ("{claim: guest_svn, less_than: 3}", False, False),
    ("{claim: name, at_least: 1}", False, False),
    ("{claim: policy.smt, at_least: 0}", False, False),
    # hex equality ignores case; must be the same bytes
    ("{claim: measurement, hex_equals: " + "AB" * 48 + "}", True, False),
    ("{claim: measurement, hex_equals: " + "ab" * 47 + "ac}", False, False),
    ("{claim: rtmr.1, hex_equals: '" + "11" * 48 + "'}", True, False),
    ("{claim: pcrs.0, hex_in: ['" + "00" * 48 + "', " + "CD" * 48 + "]}", True, False),
    ("{claim: pcrs.0, hex_in: ['" + "00" * 48 + "']}", False, False),
    ("{claim: vmpl, hex_equals: '00'}", False, False),
    # existence; null counts as absent
    ("{claim: measurement, exists: true}", True, False),
    ("{claim: host_data, exists: true}", False, False),
    ("{claim: host_data, exists: false}", True, False),
    ("{claim: reported_tcb.fmc, exists: false}", True, False),
    ("{claim: measurement, exists: false}", False, False),
    # an absent claim satisfies no comparison
    ("{claim: host_data, equals: x}", False, True),
    ("{claim: reported_tcb.fmc, at_least: 0}", False, True),
    ("{claim: rtmr.7, hex_equals: '00'}", False, True),
    ("{claim: signer.nonsense, equals: x}", False, True),
    ("{claim: tee.deeper, equals: x}", False, True),
    ("{claim: vmpl.deeper, equals: 0}", False, True),
]


@pytest.mark.parametrize(("condition", "passed", "absent"), OPERATOR_TABLE)
def test_operator(condition: str, passed: bool, absent: bool) -> None:
    clause = result(condition)
    assert (clause.passed, clause.absent) == (passed, absent)
    assert clause.kind == "require"
    assert clause.rule == "$.admit.snp.require[0]"


def test_absent_claim_is_reported_as_absent() -> None:
    clause = result("{claim: host_data, hex_equals: '00'}")
    assert clause.found is None
    assert clause.note == "claim absent"


def test_type_mismatch_is_explained() -> None:
    assert result("{claim: name, at_least: 1}").note == "found a string, not an integer"
    assert result("{claim: vmpl, equals: x}").note == "found an integer, expected a string"


# Three-valued composition: (condition, passed, absent)
COMPOSITION_TABLE = [
    ("all_of: [{claim: vmpl, equals: 0}, {claim: guest_svn, at_least: 3}]", True, False),
    ("all_of: [{claim: vmpl, equals: 0}, {claim: guest_svn, at_least: 4}]", False, False),
    ("all_of: [{claim: vmpl, equals: 0}, {claim: host_data, exists: true}]", False, False),
    ("all_of: [{claim: vmpl, equals: 0}, {claim: host_data, equals: x}]", False, True),
    ("all_of: [{claim: vmpl, equals: 9}, {claim: host_data, equals: x}]", False, False),
    ("any_of: [{claim: vmpl, equals: 1}, {claim: guest_svn, at_least: 3}]", True, False),
    ("any_of: [{claim: vmpl, equals: 1}, {claim: guest_svn, at_least: 4}]", False, False),
    ("any_of: [{claim: vmpl, equals: 1}, {claim: host_data, equals: x}]", False, True),
    ("any_of: [{claim: vmpl, equals: 0}, {claim: host_data, equals: x}]", True, False),
    ("not: {claim: vmpl, equals: 1}", True, False),
    ("not: {claim: vmpl, equals: 0}", False, False),
    # not of an undetermined condition stays undetermined: a missing claim never passes
    ("not: {claim: host_data, equals: x}", False, True),
    ("not: {claim: host_data, exists: true}", True, False),
    ("not: {not: {claim: vmpl, equals: 0}}", True, False),
    (
        "any_of: [{all_of: [{claim: vmpl, equals: 0}, {not: {claim: guest_svn, less_than: 3}}]},"
        " {claim: name, equals: Genoa}]",
        True,
        False,
    ),
]


@pytest.mark.parametrize(("condition", "passed", "absent"), COMPOSITION_TABLE)
def test_composition(condition: str, passed: bool, absent: bool) -> None:
    clause = result(condition)
    assert (clause.passed, clause.absent) == (passed, absent)


def test_composites_explain_every_child() -> None:
    clause = result("any_of: [{claim: vmpl, equals: 1}, {not: {claim: guest_svn, at_least: 3}}]")
    assert clause.op == "any_of"
    assert clause.note == "none of 2 passed"
    first, second = clause.children
    assert (first.rule, first.claim, first.op, first.expected, first.found) == (
        "$.admit.snp.require[0].any_of[0]",
        "vmpl",
        "==",
        1,
        0,
    )
    assert second.op == "not"
    assert second.children[0].rule == "$.admit.snp.require[0].any_of[1].not"
    assert second.children[0].passed


def test_reason_is_carried_into_the_explanation() -> None:
    clause = result("{claim: vmpl, equals: 1, reason: only VMPL 1 may ask}")
    assert clause.reason == "only VMPL 1 may ask"
