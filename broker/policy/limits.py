"""Release limits: which instance a release goes to, and how a limit's refusal is explained.

A policy's ``limits`` (``broker.policy.model.Limits``) are rules over the key's release
history, so the pure evaluator cannot decide them alone: the broker's release statement
takes them with the key's counters in PostgreSQL (``sql/migrations/0006_release_limits.sql``)
and reports which rule refused, which :func:`refusal_clause` turns into the same
:class:`ClauseResult` every other denial lists. Replaying a policy over past decisions
(``broker/policy/replay.py``) counts with :class:`Counters`, the same rules in memory.

The instance a per-instance rule counts is the hardware identity the evidence proves
(docs/policies.md, "Release limits"):

* SNP: ``chip_id``, the chip's unique ID; zero when the guest set MASK_CHIP_ID or the report
  is signed by a VLEK, and then there is no identity;
* TDX and SGX: ``ppid``, the platform's Provisioning ID from its PCK certificate;
* Nitro: ``pcrs.4``, the measurement of the parent EC2 instance's ID; the enclave's own
  ``module_id`` changes with every enclave started, so it would count nothing;
* snp-vtpm and tdx-vtpm: the hardware report's ``chip_id`` or ``ppid``, as SNP and TDX;
* tpm (a plain cloud vTPM): none. Its keys are the provider's software, not a chip, so a
  per-instance rule denies it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from broker.evidence.claims import Claims
from broker.policy.clauses import ClauseResult
from broker.policy.model import Limits, jsonpath
from broker.timeutil import iso

#: The claim that identifies the instance, per TEE.
INSTANCE_CLAIMS: Mapping[str, str] = {
    "snp": "chip_id",
    "tdx": "ppid",
    "sgx": "ppid",
    "nitro": "pcrs.4",
    "snp-vtpm": "chip_id",
    "tdx-vtpm": "ppid",
}

#: The rules a refusal names, as the release statement reports them.
RULES = ("max_releases", "once_per_instance", "pin_to_first_instance", "rate_per_instance")


def instance_of(tee: str, fields: Mapping[str, Any]) -> str | None:
    """``<tee>:<claim>:<value>`` of the instance claims of ``tee`` describe, or None when
    they carry no identity (the claim is absent, or all zero: masked)."""
    path = INSTANCE_CLAIMS.get(tee)
    if path is None:
        return None
    node: Any = fields
    for part in path.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    if not isinstance(node, str) or not node or not node.strip("0"):
        return None
    return f"{tee}:{path}:{node.lower()}"


def instance(claims: Claims) -> str | None:
    """The instance of verified ``claims`` (:func:`instance_of`)."""
    return instance_of(claims.tee.value, claims.fields)


def unidentified_clause(tee: str, limits: Limits) -> ClauseResult:
    """The denial of a release whose evidence names no instance under per-instance rules."""
    rule = next(
        name
        for name, on in (
            ("once_per_instance", limits.once_per_instance),
            ("pin_to_first_instance", limits.pin_to_first_instance),
            ("rate_per_instance", limits.rate_per_instance is not None),
        )
        if on
    )
    claim = INSTANCE_CLAIMS.get(tee, "instance")
    return ClauseResult(
        "limits",
        jsonpath(("limits", rule)),
        claim,
        "identifies",
        "an instance",
        None,
        False,
        absent=True,
        note=f"the {tee} evidence carries no instance identity (absent or masked {claim}), "
        "which the per-instance limits need",
        reason=limits.reason,
    )


@dataclass(frozen=True, slots=True)
class Refusal:
    """Which limit refused a release, with what the counters held."""

    rule: str
    found: Any
    """``max_releases``: the releases counted; ``once_per_instance``: the instance's;
    ``pin_to_first_instance``: the pinned instance; ``rate_per_instance``: the releases to
    the instance in the window."""
    retry_at: datetime | None = None
    """``rate_per_instance``: when the oldest release in the window leaves it."""


def refusal_clause(refusal: Refusal, limits: Limits, instance: str | None) -> ClauseResult:
    """The refusal as the clause that failed, for denials and audit records."""
    rule = jsonpath(("limits", refusal.rule))
    note: str
    if refusal.rule == "max_releases":
        expected: Any = limits.max_releases
        op, claim = "<", "releases"
        note = f"the key was released {refusal.found} time(s) under its limits"
    elif refusal.rule == "once_per_instance":
        expected, op, claim = 1, "<", "releases_to_instance"
        note = f"{instance} received the key already"
    elif refusal.rule == "pin_to_first_instance":
        expected, op, claim = refusal.found, "==", "instance"
        note = "the key is pinned to the instance of its first release under its limits"
        return ClauseResult(
            "limits", rule, claim, op, expected, instance, False, note=note, reason=limits.reason
        )
    elif refusal.rule == "rate_per_instance" and limits.rate_per_instance is not None:
        rate = limits.rate_per_instance
        expected, op, claim = rate.releases, "<", "releases_to_instance_in_window"
        note = f"{refusal.found} release(s) to {instance} in the last {rate.per.text}"
        if refusal.retry_at is not None:
            note += f"; the next is allowed from {iso(refusal.retry_at)}"
    else:
        raise ValueError(f"no such limit: {refusal.rule}")
    return ClauseResult(
        "limits", rule, claim, op, expected, refusal.found, False, note=note, reason=limits.reason
    )


@dataclass
class _Instance:
    releases: int = 0
    recent: list[datetime] = field(default_factory=list)


@dataclass
class Counters:
    """One key's counters in memory, for replay: the rules of the release statement
    (``release_limits_take`` in migration 0006), applied in the order of the history."""

    releases: int = 0
    pinned: str | None = None
    instances: dict[str, _Instance] = field(default_factory=dict)

    def take(self, limits: Limits, instance: str | None, at: datetime) -> Refusal | None:
        """Count a release allowed by the claims at ``at``; the refusal, counting nothing,
        when a limit refuses it."""
        if limits.max_releases is not None and self.releases >= limits.max_releases:
            return Refusal("max_releases", self.releases)
        seen = self.instances.get(instance) if instance is not None else None
        if limits.pin_to_first_instance and self.pinned is not None and instance != self.pinned:
            return Refusal("pin_to_first_instance", self.pinned)
        if limits.once_per_instance and seen is not None and seen.releases > 0:
            return Refusal("once_per_instance", seen.releases)
        rate = limits.rate_per_instance
        if rate is not None and seen is not None:
            since = at - rate.per.delta
            recent = [t for t in seen.recent if t > since]
            if len(recent) >= rate.releases:
                return Refusal("rate_per_instance", len(recent), min(recent) + rate.per.delta)
        self.releases += 1
        if instance is not None:
            if self.pinned is None and limits.pin_to_first_instance:
                self.pinned = instance
            entry = self.instances.setdefault(instance, _Instance())
            entry.releases += 1
            if rate is not None:
                since = at - rate.per.delta
                entry.recent = [*(t for t in entry.recent if t > since), at][-rate.releases :]
        return None
