"""Release limits: the policy language, the instance a release goes to, the in-memory
counters (replay's, and the fake store's), and how a refusal is explained."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from broker.errors import PolicyDenied, PolicyError
from broker.evidence.claims import Tee
from broker.policy import evaluate
from broker.policy.evaluate import describe
from broker.policy.limits import Counters, Refusal, instance, instance_of, refusal_clause
from broker.policy.model import Duration, Limits, RatePerInstance
from broker.release.service import limit_take

from .support import AWS, INTEL, NOW, claims_of, policy

CHIP = "ab" * 64
ADMIT_ANY = "  any:\n    insecure_allow_debug: true\n"


def limited(limits: str) -> Any:
    return policy(ADMIT_ANY, extra=f"limits: {limits}\n")


# --- the language ---------------------------------------------------------------------------


def test_limits_round_trip_through_the_canonical_form() -> None:
    rules = limited(
        "{max_releases: 3, once_per_instance: true, pin_to_first_instance: true, "
        "rate_per_instance: {releases: 2, per: 1h}, reason: one appliance}"
    )
    assert rules.limits == Limits(
        3, True, True, RatePerInstance(2, Duration("1h")), "one appliance"
    )
    assert rules.to_json()["limits"] == {
        "max_releases": 3,
        "once_per_instance": True,
        "pin_to_first_instance": True,
        "rate_per_instance": {"releases": 2, "per": "1h"},
        "reason": "one appliance",
    }


def test_limits_that_state_no_rule_are_no_limits() -> None:
    assert limited("{}").limits is None
    assert limited("{once_per_instance: false}").limits is None
    assert limited("{}").digest() == policy(ADMIT_ANY).digest()


def test_limits_change_the_digest() -> None:
    assert limited("{max_releases: 1}").digest() != limited("{max_releases: 2}").digest()


@pytest.mark.parametrize(
    ("limits", "path", "message"),
    [
        ("{max_releases: 0}", "$.limits.max_releases", "0 is less than the minimum of 1"),
        ("{max_releases: one}", "$.limits.max_releases", "expected integer"),
        (
            "{rate_per_instance: {releases: 1001, per: 1h}}",
            "$.limits.rate_per_instance.releases",
            "1001 is greater than the maximum of 1000",
        ),
        ("{rate_per_instance: {releases: 2}}", "$.limits.rate_per_instance", "missing key 'per'"),
        (
            "{rate_per_instance: {releases: 2, per: 1w}}",
            "$.limits.rate_per_instance.per",
            '"1w" is not a duration',
        ),
        ("{max_release: 1}", "$.limits.max_release", "did you mean 'max_releases'?"),
        (
            "{acknowledged_warnings: {no-measurement: x}}",
            '$.limits.acknowledged_warnings["no-measurement"]',
            "known: limits-redundant",
        ),
    ],
)
def test_invalid_limits_are_refused_with_their_path(limits: str, path: str, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        limited(limits)
    problems = [(p["path"], p["message"]) for p in caught.value.problems]
    assert any(where == path and message in text for where, text in problems), problems


# --- the instance ----------------------------------------------------------------------------


def test_the_instance_of_each_tee() -> None:
    assert instance(claims_of(Tee.SNP, chip_id=CHIP)) == f"snp:chip_id:{CHIP}"
    assert instance(claims_of(Tee.TDX, INTEL, ppid="0A" * 16)) == f"tdx:ppid:{'0a' * 16}"
    assert instance(claims_of(Tee.SGX, INTEL, ppid="0b" * 16)) == f"sgx:ppid:{'0b' * 16}"
    pcrs = {"0": "00" * 48, "4": "cd" * 48}
    assert instance(claims_of(Tee.NITRO, AWS, pcrs=pcrs)) == f"nitro:pcrs.4:{'cd' * 48}"
    # Behind a paravisor's vTPM the hardware report underneath names the chip or platform.
    assert instance(claims_of(Tee.SNP_VTPM, chip_id=CHIP)) == f"snp-vtpm:chip_id:{CHIP}"
    tdx_vtpm = claims_of(Tee.TDX_VTPM, INTEL, ppid="0c" * 16)
    assert instance(tdx_vtpm) == f"tdx-vtpm:ppid:{'0c' * 16}"


@pytest.mark.parametrize(
    ("tee", "fields"),
    [
        ("snp", {"chip_id": "00" * 64}),  # MASK_CHIP_ID or a VLEK
        ("snp", {}),
        ("tdx", {"ppid": None}),
        ("nitro", {"pcrs": {"0": "ab" * 48}}),
        ("nitro", {"pcrs": {"4": "00" * 48}}),
        ("nitro", {"module_id": "i-0123-enc0123"}),
        ("azure-vtpm", {"chip_id": CHIP}),
        ("snp-vtpm", {"chip_id": "00" * 64}),
        # A plain cloud vTPM: its AK is the provider's software key, no chip's identity.
        ("tpm", {"chip_id": CHIP, "tpm": {"ak_fingerprint": "ab" * 32}}),
    ],
)
def test_evidence_without_an_identity_names_no_instance(tee: str, fields: dict[str, Any]) -> None:
    assert instance_of(tee, fields) is None


def test_a_per_instance_rule_denies_evidence_without_an_identity() -> None:
    rules = limited("{max_releases: 5, once_per_instance: true}")
    claims = claims_of(Tee.SNP, chip_id="00" * 64)
    decision = evaluate(rules, claims, NOW)
    assert decision.allow
    body: dict[str, Any] = {}
    with pytest.raises(PolicyDenied) as caught:
        limit_take(rules, decision, claims, body)
    assert caught.value.detail == (
        "policy test v1 denied: chip_id identifies an instance, found claim absent (the snp "
        "evidence carries no instance identity (absent or masked chip_id), which the "
        "per-instance limits need)"
    )
    assert [r["rule"] for r in body["reasons"]] == ["$.limits.once_per_instance"]


def test_max_releases_alone_needs_no_identity() -> None:
    rules = limited("{max_releases: 5}")
    claims = claims_of(Tee.SNP, chip_id="00" * 64)
    take = limit_take(rules, evaluate(rules, claims, NOW), claims, {})
    assert take.arguments() == (None, 5, False, False, None, None)


def test_the_take_carries_every_rule() -> None:
    rules = limited("{pin_to_first_instance: true, rate_per_instance: {releases: 3, per: 2m}}")
    claims = claims_of(Tee.SNP, chip_id=CHIP)
    take = limit_take(rules, evaluate(rules, claims, NOW), claims, {})
    assert take.arguments() == (f"snp:chip_id:{CHIP}", None, False, True, 3, timedelta(minutes=2))


# --- the counters ----------------------------------------------------------------------------


def test_max_releases_counts_only_what_it_allows() -> None:
    counters, rules = Counters(), Limits(max_releases=2)
    assert counters.take(rules, None, NOW) is None
    assert counters.take(rules, None, NOW) is None
    assert counters.take(rules, None, NOW) == Refusal("max_releases", 2)
    assert counters.take(rules, None, NOW) == Refusal("max_releases", 2)
    assert counters.releases == 2


def test_once_per_instance() -> None:
    counters, rules = Counters(), Limits(once_per_instance=True)
    assert counters.take(rules, "a", NOW) is None
    assert counters.take(rules, "a", NOW) == Refusal("once_per_instance", 1)
    assert counters.take(rules, "b", NOW) is None


def test_pin_to_first_instance() -> None:
    counters, rules = Counters(), Limits(pin_to_first_instance=True)
    assert counters.take(rules, "a", NOW) is None
    assert counters.take(rules, "b", NOW) == Refusal("pin_to_first_instance", "a")
    assert counters.take(rules, "a", NOW) is None
    assert counters.releases == 2


def test_releases_before_pinning_was_stated_pin_nothing() -> None:
    counters = Counters()
    assert counters.take(Limits(max_releases=9), "a", NOW) is None
    assert counters.take(Limits(pin_to_first_instance=True), "b", NOW) is None
    assert counters.pinned == "b"


def test_the_rate_is_a_sliding_window() -> None:
    counters = Counters()
    rules = Limits(rate_per_instance=RatePerInstance(2, Duration("1h")))
    minute = timedelta(minutes=1)
    assert counters.take(rules, "a", NOW) is None
    assert counters.take(rules, "a", NOW + 30 * minute) is None
    refused = counters.take(rules, "a", NOW + 59 * minute)
    assert refused == Refusal("rate_per_instance", 2, NOW + 60 * minute)
    assert counters.take(rules, "b", NOW + 59 * minute) is None  # another instance
    assert counters.take(rules, "a", NOW + 61 * minute) is None  # the first left the window
    assert counters.take(rules, "a", NOW + 62 * minute) == Refusal(
        "rate_per_instance", 2, NOW + 90 * minute
    )


def test_a_rate_of_one() -> None:
    counters = Counters()
    rules = Limits(rate_per_instance=RatePerInstance(1, Duration("10s")))
    assert counters.take(rules, "a", NOW) is None
    assert counters.take(rules, "a", NOW + timedelta(seconds=9)) is not None
    assert counters.take(rules, "a", NOW + timedelta(seconds=10)) is None


# --- the explanation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("refusal", "text"),
    [
        (
            Refusal("max_releases", 1),
            "releases < 1, found 1 (the key was released 1 time(s) under its limits)",
        ),
        (
            Refusal("once_per_instance", 1),
            "releases_to_instance < 1, found 1 (snp:chip_id:ab received the key already)",
        ),
        (
            Refusal("pin_to_first_instance", "snp:chip_id:cd"),
            "instance == snp:chip_id:cd, found snp:chip_id:ab (the key is pinned to the "
            "instance of its first release under its limits)",
        ),
        (
            Refusal("rate_per_instance", 2, NOW),
            "releases_to_instance_in_window < 2, found 2 (2 release(s) to snp:chip_id:ab in "
            "the last 1h; the next is allowed from 2023-01-01T00:00:00+00:00)",
        ),
    ],
)
def test_each_refusal_explains_itself(refusal: Refusal, text: str) -> None:
    rules = Limits(1, True, True, RatePerInstance(2, Duration("1h")), reason="one box")
    clause = refusal_clause(refusal, rules, "snp:chip_id:ab")
    assert describe(clause) == text
    assert (clause.kind, clause.rule, clause.passed, clause.reason) == (
        "limits",
        f"$.limits.{refusal.rule}",
        False,
        "one box",
    )


def test_an_unknown_rule_is_refused() -> None:
    with pytest.raises(ValueError, match="no such limit: max"):
        refusal_clause(Refusal("max", 1), Limits(max_releases=1), None)
