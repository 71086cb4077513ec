"""The semantic difference of two policies: which clauses were added or removed, and which
admit more (``loosened``) or less (``tightened``) than before (docs/policies.md, "Comparing
two versions").

Each rule is compared by what it means, not by its text: a lower SNP minimum is loosened, a
new reference value is loosened (one more image is admitted), a new ``require`` condition
is tightened, a larger ``max_releases`` is loosened. Where the direction cannot be known
from the two texts alone (a condition rewritten on another claim), the change is
``changed``. Layout, comments and the order of list members never show.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from broker.jcs import canonical_text
from broker.policy.model import (
    Compare,
    Condition,
    Limits,
    Operator,
    Policy,
    Section,
    jsonpath,
)

ADDED, REMOVED, LOOSENED, TIGHTENED, CHANGED = (
    "added",
    "removed",
    "loosened",
    "tightened",
    "changed",
)
KINDS = (ADDED, REMOVED, LOOSENED, TIGHTENED, CHANGED)


@dataclass(frozen=True, slots=True)
class Difference:
    rule: str
    """Where, as a JSONPath of the newer version (of the older one for what was removed)."""
    change: str
    """``added``, ``removed``, ``loosened``, ``tightened`` or ``changed``."""
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"rule": self.rule, "change": self.change, "detail": self.detail}


def diff(old: Policy, new: Policy) -> list[Difference]:
    """Every semantic difference from ``old`` to ``new``, in policy order."""
    return list(_diff(old, new))


def summary(differences: list[Difference]) -> dict[str, int]:
    return {kind: sum(1 for d in differences if d.change == kind) for kind in KINDS}


def _diff(old: Policy, new: Policy) -> Iterator[Difference]:
    before = {s.tee: s for s in old.sections}
    after = {s.tee: s for s in new.sections}
    for tee in [*before, *(t for t in after if t not in before)]:
        where = ("admit", tee)
        if tee not in after:
            yield Difference(jsonpath(where), REMOVED, f"{tee} evidence is no longer admitted")
        elif tee not in before:
            yield Difference(jsonpath(where), ADDED, f"{tee} evidence is admitted")
        else:
            yield from _section(old, new, before[tee], after[tee])
    yield from _limits(old.limits, new.limits)


def _ordered(
    old: Any, new: Any, path: tuple[str | int, ...], what: str, *, larger_admits_more: bool
) -> Iterator[Difference]:
    """A number that orders what the rule admits: an age or a count (a larger one admits
    more), or a minimum (a larger one admits less)."""
    rule = jsonpath(path)
    if old == new:
        return
    if old is None:
        yield Difference(rule, ADDED, f"{what} {new} is required")
    elif new is None:
        yield Difference(rule, REMOVED, f"{what} {old} is no longer required")
    else:
        looser = (new > old) == larger_admits_more
        yield Difference(rule, LOOSENED if looser else TIGHTENED, f"{what} {old} -> {new}")


def _allowed(
    old: tuple[str, ...] | None,
    new: tuple[str, ...] | None,
    path: tuple[str | int, ...],
    what: str,
) -> Iterator[Difference]:
    """A list of accepted values, None meaning no restriction."""
    rule = jsonpath(path)
    if old == new or (old is not None and new is not None and set(old) == set(new)):
        return
    if old is None:
        yield Difference(rule, TIGHTENED, f"{what} restricted to {', '.join(new or ())}")
    elif new is None:
        yield Difference(rule, LOOSENED, f"{what} no longer restricted")
    else:
        gained, lost = sorted(set(new) - set(old)), sorted(set(old) - set(new))
        if gained:
            yield Difference(rule, LOOSENED, f"{what} also accepts {', '.join(gained)}")
        if lost:
            yield Difference(rule, TIGHTENED, f"{what} no longer accepts {', '.join(lost)}")


def _section(old: Policy, new: Policy, before: Section, after: Section) -> Iterator[Difference]:
    base: tuple[str | int, ...] = ("admit", after.tee)
    old_signer, new_signer = before.signer, after.signer
    old_origin = None if old_signer is None else old_signer.origin
    new_origin = None if new_signer is None else new_signer.origin
    if old_origin != new_origin:
        change = TIGHTENED if old_origin is None else LOOSENED if new_origin is None else CHANGED
        yield Difference(
            jsonpath((*base, "signer", "origin")),
            change,
            f"signer origin {old_origin or 'any'} -> {new_origin or 'any'}",
        )
    for member in ("roots", "keys"):
        yield from _allowed(
            None if old_signer is None else getattr(old_signer, member),
            None if new_signer is None else getattr(new_signer, member),
            (*base, "signer", member),
            f"signer {member}",
        )
    if before.insecure_allow_debug != after.insecure_allow_debug:
        loosened = after.insecure_allow_debug
        yield Difference(
            jsonpath((*base, "insecure_allow_debug")),
            LOOSENED if loosened else TIGHTENED,
            "debug guests are admitted" if loosened else "debug guests are refused",
        )
    yield from _references(old, new, before, after, (*base, "reference_values"))
    yield from _tcb(before, after, (*base, "minimum_tcb"))
    for age in ("max_evidence_age", "max_collateral_age"):
        old_age = None if before.freshness is None else getattr(before.freshness, age)
        new_age = None if after.freshness is None else getattr(after.freshness, age)
        yield from _ordered(
            None if old_age is None else old_age.seconds,
            None if new_age is None else new_age.seconds,
            (*base, "freshness", age),
            f"{age} (seconds)",
            larger_admits_more=True,
        )
    yield from _conditions(before.require, after.require, (*base, "require"))


def _references(
    old: Policy, new: Policy, before: Section, after: Section, path: tuple[str | int, ...]
) -> Iterator[Difference]:
    """Reference values admit the images they list: what counts is the entries."""
    old_entries = _entries(old, before)
    new_entries = _entries(new, after)
    rule = jsonpath(path)
    if not before.reference_values and after.reference_values:
        yield Difference(rule, ADDED, f"the measurement must match one of {len(new_entries)}")
        return
    if before.reference_values and not after.reference_values:
        yield Difference(rule, REMOVED, "no reference values: any measurement is admitted")
        return
    gained = [label for text, label in new_entries.items() if text not in old_entries]
    lost = [label for text, label in old_entries.items() if text not in new_entries]
    if gained:
        yield Difference(rule, LOOSENED, f"{len(gained)} more accepted: {', '.join(gained)}")
    if lost:
        yield Difference(rule, TIGHTENED, f"{len(lost)} no longer accepted: {', '.join(lost)}")


def _entries(policy: Policy, section: Section) -> dict[str, str]:
    """Each accepted image (its canonical text) with a label for people."""
    entries: dict[str, str] = {}
    for name in section.reference_values:
        for index, entry in enumerate(policy.reference_set(name).entries):
            text = canonical_text(dict(entry.values))
            entries[text] = entry.label or f"{name}[{index}]"
    return entries


def _tcb(before: Section, after: Section, path: tuple[str | int, ...]) -> Iterator[Difference]:
    old, new = before.minimum_tcb, after.minimum_tcb
    old_minimums = {} if old is None else dict(old.minimums)
    new_minimums = {} if new is None else dict(new.minimums)
    for key in dict.fromkeys([*old_minimums, *new_minimums]):
        yield from _ordered(
            old_minimums.get(key),
            new_minimums.get(key),
            (*path, key),
            f"minimum {key}",
            larger_admits_more=False,
        )
    yield from _allowed(
        None if old is None else old.tcb_status,
        None if new is None else new.tcb_status,
        (*path, "tcb_status"),
        "tcb_status",
    )
    yield from _allowed(
        None if old is None else old.accepted_advisories,
        None if new is None else new.accepted_advisories,
        (*path, "advisory_ids", "accept"),
        "advisories",
    )
    # A deny-list: a refused advisory added tightens.
    old_refused = set(
        () if old is None or old.refused_advisories is None else old.refused_advisories
    )
    new_refused = set(
        () if new is None or new.refused_advisories is None else new.refused_advisories
    )
    rule = jsonpath((*path, "advisory_ids", "refuse"))
    if new_refused - old_refused:
        refused = ", ".join(sorted(new_refused - old_refused))
        yield Difference(rule, TIGHTENED, f"platforms with {refused} are refused")
    if old_refused - new_refused:
        admitted = ", ".join(sorted(old_refused - new_refused))
        yield Difference(rule, LOOSENED, f"platforms with {admitted} are admitted again")


#: Comparisons whose value orders what they admit: for these, a larger value admits more.
_MORE_WITH_LARGER = {Operator.AT_MOST, Operator.LESS_THAN}
_LESS_WITH_LARGER = {Operator.AT_LEAST, Operator.GREATER_THAN}
_SETS = {Operator.IN, Operator.HEX_IN}


def _conditions(
    old: tuple[Condition, ...], new: tuple[Condition, ...], path: tuple[str | int, ...]
) -> Iterator[Difference]:
    old_texts = [canonical_text(c.to_json()) for c in old]
    new_texts = [canonical_text(c.to_json()) for c in new]
    removed = [
        (i, c) for i, (c, t) in enumerate(zip(old, old_texts, strict=True)) if t not in new_texts
    ]
    added = [
        (i, c) for i, (c, t) in enumerate(zip(new, new_texts, strict=True)) if t not in old_texts
    ]
    for index, condition in added:
        partner = _partner(condition, removed)
        if partner is None:
            yield Difference(jsonpath((*path, index)), ADDED, f"requires {_text(condition)}")
            continue
        removed.remove(partner)
        yield _compared(partner[1], condition, jsonpath((*path, index)))
    for index, condition in removed:
        yield Difference(
            jsonpath((*path, index)), REMOVED, f"no longer requires {_text(condition)}"
        )


def _partner(
    condition: Condition, removed: list[tuple[int, Condition]]
) -> tuple[int, Condition] | None:
    """The removed comparison of the same claim with the same operator, if any."""
    if not isinstance(condition, Compare):
        return None
    for index, other in removed:
        if isinstance(other, Compare) and (other.claim, other.op) == (
            condition.claim,
            condition.op,
        ):
            return index, other
    return None


def _compared(old: Condition, new: Condition, rule: str) -> Difference:
    if not isinstance(old, Compare) or not isinstance(new, Compare):  # by _partner
        return Difference(rule, CHANGED, f"{_text(old)} -> {_text(new)}")
    detail = f"{_text(old)} -> {_text(new)}"
    if new.op in _SETS and isinstance(old.value, tuple) and isinstance(new.value, tuple):
        wider, narrower = set(new.value) >= set(old.value), set(new.value) <= set(old.value)
        if wider != narrower:
            return Difference(rule, LOOSENED if wider else TIGHTENED, detail)
    elif isinstance(old.value, int) and isinstance(new.value, int):
        if new.op in _MORE_WITH_LARGER:
            return Difference(rule, LOOSENED if new.value > old.value else TIGHTENED, detail)
        if new.op in _LESS_WITH_LARGER:
            return Difference(rule, TIGHTENED if new.value > old.value else LOOSENED, detail)
    return Difference(rule, CHANGED, detail)


def _text(condition: Condition) -> str:
    if isinstance(condition, Compare):
        value = list(condition.value) if isinstance(condition.value, tuple) else condition.value
        return f"{condition.claim} {condition.op.symbol} {value}"
    return canonical_text(condition.to_json())


def _limits(old: Limits | None, new: Limits | None) -> Iterator[Difference]:
    if old == new:
        return
    before = old or Limits()
    after = new or Limits()
    # More releases allowed in all: loosened.
    yield from _ordered(
        before.max_releases,
        after.max_releases,
        ("limits", "max_releases"),
        "max_releases",
        larger_admits_more=True,
    )
    for rule in ("once_per_instance", "pin_to_first_instance"):
        was, now = getattr(before, rule), getattr(after, rule)
        if was != now:
            yield Difference(
                jsonpath(("limits", rule)),
                ADDED if now else REMOVED,
                f"{rule} {'now applies' if now else 'no longer applies'}",
            )
    old_rate, new_rate = before.rate_per_instance, after.rate_per_instance
    if old_rate != new_rate:
        rule = jsonpath(("limits", "rate_per_instance"))
        if old_rate is None or new_rate is None:
            rate = new_rate or old_rate
            text = "" if rate is None else f"{rate.releases} per {rate.per.text}"
            yield Difference(rule, ADDED if old_rate is None else REMOVED, f"rate {text}")
        else:
            old_per_second = old_rate.releases / old_rate.per.seconds
            new_per_second = new_rate.releases / new_rate.per.seconds
            change = (
                CHANGED
                if old_per_second == new_per_second
                else LOOSENED
                if new_per_second > old_per_second
                else TIGHTENED
            )
            yield Difference(
                rule,
                change,
                f"{old_rate.releases} per {old_rate.per.text} -> "
                f"{new_rate.releases} per {new_rate.per.text}",
            )
