"""The semantic difference of two policies (``broker/policy/diff.py``)."""

from __future__ import annotations

import pytest

from broker.policy.diff import diff, summary

from .support import policy

BASE = """\
  snp:
    signer: {origin: silicon-vendor, roots: [amd-ark-milan]}
    reference_values: [images]
    minimum_tcb: {snp: 7, microcode: 200}
    freshness: {max_collateral_age: 30d}
    require:
      - {claim: vmpl, equals: 0}
      - {claim: guest_svn, at_least: 3}
"""
IMAGES = (
    "reference_values:\n  images:\n    tee: snp\n    values:\n"
    "      - {label: v1, measurement: '%s'}\n" % ("aa" * 48)
)
V2_IMAGE = "      - {label: v2, measurement: '%s'}\n" % ("bb" * 48)


def changes(old_admit: str, new_admit: str, **extra: str) -> list[tuple[str, str]]:
    old = policy(old_admit, extra=extra.get("old", IMAGES))
    new = policy(new_admit, extra=extra.get("new", IMAGES))
    return [(d.change, d.rule) for d in diff(old, new)]


def test_identical_policies_differ_in_nothing() -> None:
    assert changes(BASE, BASE) == []


def test_layout_and_list_order_do_not_show() -> None:
    reordered = BASE.replace(
        "      - {claim: vmpl, equals: 0}\n      - {claim: guest_svn, at_least: 3}\n",
        "      - {claim: guest_svn, at_least: 3}\n      - {claim: vmpl,   equals: 0}\n",
    )
    assert changes(BASE, reordered) == []


@pytest.mark.parametrize(
    ("new", "expected"),
    [
        (BASE.replace("snp: 7", "snp: 6"), [("loosened", "$.admit.snp.minimum_tcb.snp")]),
        (BASE.replace("snp: 7", "snp: 8"), [("tightened", "$.admit.snp.minimum_tcb.snp")]),
        (
            BASE.replace(", microcode: 200", ""),
            [("removed", "$.admit.snp.minimum_tcb.microcode")],
        ),
        (
            BASE.replace("30d", "60d"),
            [("loosened", "$.admit.snp.freshness.max_collateral_age")],
        ),
        (
            BASE.replace(", roots: [amd-ark-milan]", ""),
            [("loosened", "$.admit.snp.signer.roots")],
        ),
        (
            BASE.replace("[amd-ark-milan]", "[amd-ark-milan, amd-ark-genoa]"),
            [("loosened", "$.admit.snp.signer.roots")],
        ),
        (
            BASE.replace("origin: silicon-vendor, ", ""),
            [("loosened", "$.admit.snp.signer.origin")],
        ),
        (
            BASE + "    insecure_allow_debug: true\n",
            [("loosened", "$.admit.snp.insecure_allow_debug")],
        ),
        (
            BASE.replace("at_least: 3", "at_least: 2"),
            [("loosened", "$.admit.snp.require[1]")],
        ),
        (
            BASE.replace("at_least: 3", "at_least: 4"),
            [("tightened", "$.admit.snp.require[1]")],
        ),
        (
            BASE.replace("equals: 0", "equals: 1"),
            [("changed", "$.admit.snp.require[0]")],
        ),
        (
            BASE + "      - {claim: policy.smt, equals: false}\n",
            [("added", "$.admit.snp.require[2]")],
        ),
        (
            BASE.replace("      - {claim: vmpl, equals: 0}\n", ""),
            [("removed", "$.admit.snp.require[0]")],
        ),
        (
            BASE + "  tdx:\n    signer: {origin: silicon-vendor}\n",
            [("added", "$.admit.tdx")],
        ),
    ],
)
def test_each_rule_is_compared_by_meaning(new: str, expected: list[tuple[str, str]]) -> None:
    assert changes(BASE, new) == expected


def test_a_removed_section_is_named() -> None:
    with_tdx = BASE + "  tdx:\n    signer: {origin: silicon-vendor}\n"
    assert changes(with_tdx, BASE) == [("removed", "$.admit.tdx")]


def test_reference_values_compare_the_images_they_accept() -> None:
    assert changes(BASE, BASE, new=IMAGES + V2_IMAGE) == [
        ("loosened", "$.admit.snp.reference_values")
    ]
    old, new = policy(BASE, extra=IMAGES + V2_IMAGE), policy(BASE, extra=IMAGES)
    (difference,) = diff(old, new)
    assert (difference.change, difference.detail) == ("tightened", "1 no longer accepted: v2")


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("", "limits: {max_releases: 1}\n", [("added", "$.limits.max_releases")]),
        (
            "limits: {max_releases: 1}\n",
            "limits: {max_releases: 2}\n",
            [("loosened", "$.limits.max_releases")],
        ),
        (
            "limits: {max_releases: 2}\n",
            "limits: {max_releases: 1}\n",
            [("tightened", "$.limits.max_releases")],
        ),
        (
            "limits: {once_per_instance: true}\n",
            "",
            [("removed", "$.limits.once_per_instance")],
        ),
        (
            "limits: {rate_per_instance: {releases: 2, per: 1h}}\n",
            "limits: {rate_per_instance: {releases: 2, per: 30m}}\n",
            [("loosened", "$.limits.rate_per_instance")],
        ),
        (
            "limits: {rate_per_instance: {releases: 2, per: 1h}}\n",
            "limits: {rate_per_instance: {releases: 4, per: 2h}}\n",
            [("changed", "$.limits.rate_per_instance")],
        ),
    ],
)
def test_limits_are_compared(old: str, new: str, expected: list[tuple[str, str]]) -> None:
    assert changes(BASE, BASE, old=IMAGES + old, new=IMAGES + new) == expected


def test_the_summary_counts_each_kind() -> None:
    old = policy(BASE, extra=IMAGES)
    new = policy(BASE.replace("snp: 7", "snp: 6").replace("30d", "7d"), extra=IMAGES)
    assert summary(diff(old, new)) == {
        "added": 0,
        "removed": 0,
        "loosened": 1,
        "tightened": 1,
        "changed": 0,
    }
