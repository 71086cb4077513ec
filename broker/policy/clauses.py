"""Policy clauses compiled to closures: claim getters, comparisons, compositions, and the
first-class rules (signer, debug, reference values, minimum TCB, freshness).

Each ``check(claims, now)`` returns a :class:`ClauseResult` naming the claim path, the
operator, the expected and the found value and whether it passed; work that does not depend
on the claims (splitting paths, building sets, grouping reference entries) is done once, when
the clause is compiled. The semantics are documented in :mod:`broker.policy.evaluate`.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, NamedTuple

from broker.evidence.claims import Claims, thaw
from broker.evidence.trust import INSECURE_ROOT_PREFIX
from broker.policy.model import (
    SIGNER_ATTRIBUTES,
    AllOf,
    AnyOf,
    Compare,
    Condition,
    Duration,
    MinimumTcb,
    Not,
    Operator,
    Policy,
    Section,
    SignerRule,
    jsonpath,
    minimum_claim,
)
from broker.timeutil import iso

ABSENT = "claim absent"
#: Evidence dated up to this many seconds after ``now`` still counts as fresh (clock skew
#: between the TEE's clock and the broker's); beyond it the clause fails.
CLOCK_SKEW_SECONDS = 60


class ClauseResult(NamedTuple):
    """The outcome of one clause; composites (all_of, any_of, not) carry their children."""

    kind: str
    """tee, signer, debug, reference_values, minimum_tcb, freshness, require, or limits (a
    release limit, ``broker/policy/limits.py``)."""
    rule: str
    """Where the clause is in the policy, as a JSONPath (``$.admit.snp.minimum_tcb.snp``)."""
    claim: str
    """The claim path the clause reads ('' for composites)."""
    op: str
    expected: Any
    found: Any
    """The claim's value; None with ``absent`` when the claim is absent or null."""
    passed: bool
    absent: bool = False
    """The clause could not be decided because a claim (or time) is absent: it fails."""
    note: str | None = None
    """What the evaluator adds: why it failed, which reference entry matched, an age."""
    reason: str | None = None
    """The author's ``reason`` for the rule, when the policy gives one."""
    children: tuple[ClauseResult, ...] = ()
    entry: ReferenceMatch | None = None
    """The reference entry that matched (``reference_values`` clauses that passed)."""

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "kind": self.kind,
            "rule": self.rule,
            "claim": self.claim,
            "op": self.op,
            "expected": thaw(self.expected),
            "found": thaw(self.found),
            "passed": self.passed,
        }
        if self.absent:
            doc["absent"] = True
        if self.note is not None:
            doc["note"] = self.note
        if self.reason is not None:
            doc["reason"] = self.reason
        if self.children:
            doc["children"] = [child.to_json() for child in self.children]
        if self.entry is not None:
            doc["entry"] = self.entry.to_json()
        return doc


class ReferenceMatch(NamedTuple):
    """Which entry of which set matched: named in explanations and audit records."""

    set: str
    number: int
    """1-based position of the entry in its set."""
    label: str | None

    def to_json(self) -> dict[str, Any]:
        return {"set": self.set, "number": self.number, "label": self.label}


Check = Callable[[Claims, datetime], ClauseResult]


# --- claim paths ----------------------------------------------------------------------------

_MISSING: Any = object()
Getter = Callable[[Claims], Any]


def compile_getter(path: str) -> Getter:
    """A function returning the claim at ``path``, or ``_MISSING`` when absent or null."""
    head, *rest = path.split(".")
    if head in ("tee", "debug", "signer"):
        return _attribute_getter(head, rest)
    steps = tuple((part, int(part) if part.isdigit() else None) for part in rest)

    def get(claims: Claims) -> Any:
        node = claims.fields.get(head)
        for key, index in steps:
            if isinstance(node, Mapping):
                node = node.get(key)
            elif index is not None and isinstance(node, tuple) and index < len(node):
                node = node[index]
            else:
                return _MISSING
        return _MISSING if node is None else node

    return get


def _attribute_getter(head: str, rest: list[str]) -> Getter:
    if head == "tee" and not rest:
        return lambda claims: claims.tee.value
    if head == "debug" and not rest:
        return lambda claims: claims.debug
    if head == "signer" and len(rest) == 1 and rest[0] in SIGNER_ATTRIBUTES:
        attribute = rest[0]

        def get(claims: Claims) -> Any:
            value = getattr(claims.signer, attribute)
            return _MISSING if value is None else str(value)

        return get
    return lambda claims: _MISSING


# --- comparisons ----------------------------------------------------------------------------

Test = Callable[[Any], tuple[bool, str | None]]


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, tuple):
        return "a list"
    return "an object"


def _same(found: Any, expected: Any) -> bool:
    """Equality that keeps booleans apart from the integers 0 and 1."""
    if type(found) is bool or type(expected) is bool:
        return type(found) is type(expected) and found == expected
    return bool(found == expected)


def _equals_test(expected: Any) -> Test:
    def test(found: Any) -> tuple[bool, str | None]:
        if _same(found, expected):
            return True, None
        if _kind(found) != _kind(expected):
            return False, f"found {_kind(found)}, expected {_kind(expected)}"
        return False, None

    return test


def _in_test(expected: tuple[Any, ...]) -> Test:
    if all(type(value) is str for value in expected):
        accepted = frozenset(expected)
        return lambda found: (type(found) is str and found in accepted, None)
    return lambda found: (any(_same(found, value) for value in expected), None)


def _ordered_test(compare: Callable[[int, int], bool], bound: int) -> Test:
    def test(found: Any) -> tuple[bool, str | None]:
        if type(found) is not int:
            return False, f"found {_kind(found)}, not an integer"
        return compare(found, bound), None

    return test


def _hex_test(accepted: frozenset[str]) -> Test:
    def test(found: Any) -> tuple[bool, str | None]:
        if type(found) is not str:
            return False, f"found {_kind(found)}, not hex"
        return found.lower() in accepted, None

    return test


def _test_for(op: Operator, value: Any) -> Test:
    if op is Operator.EQUALS:
        return _equals_test(value)
    if op is Operator.IN:
        return _in_test(value)
    if op is Operator.HEX_EQUALS:
        return _hex_test(frozenset((value,)))
    if op is Operator.HEX_IN:
        return _hex_test(frozenset(value))
    return _ordered_test(_ORDERED[op], value)


_ORDERED: dict[Operator, Callable[[int, int], bool]] = {
    Operator.AT_LEAST: operator.ge,
    Operator.GREATER_THAN: operator.gt,
    Operator.AT_MOST: operator.le,
    Operator.LESS_THAN: operator.lt,
}


def _compile_compare(condition: Compare, rule: str, kind: str) -> Check:
    get = compile_getter(condition.claim)
    claim, reason, symbol = condition.claim, condition.reason, condition.op.symbol
    if condition.op is Operator.EXISTS:
        wanted = bool(condition.value)

        def check_exists(claims: Claims, now: datetime) -> ClauseResult:
            found = get(claims)
            present = found is not _MISSING
            note = None if present == wanted else ("claim present" if present else ABSENT)
            shown = found if present else None
            return ClauseResult(
                kind, rule, claim, symbol, wanted, shown, present == wanted, False, note, reason
            )

        return check_exists

    test = _test_for(condition.op, condition.value)
    expected = condition.value

    def check(claims: Claims, now: datetime) -> ClauseResult:
        found = get(claims)
        if found is _MISSING:
            return ClauseResult(
                kind, rule, claim, symbol, expected, None, False, True, ABSENT, reason
            )
        passed, note = test(found)
        return ClauseResult(kind, rule, claim, symbol, expected, found, passed, False, note, reason)

    return check


def compile_condition(condition: Condition, rule: str, kind: str) -> Check:
    if isinstance(condition, Compare):
        return _compile_compare(condition, rule, kind)
    reason = condition.reason
    if isinstance(condition, Not):
        inner = compile_condition(condition.condition, f"{rule}.not", kind)

        def check_not(claims: Claims, now: datetime) -> ClauseResult:
            result = inner(claims, now)
            if result.absent:
                note = "undetermined: a claim is absent"
                return ClauseResult(
                    kind, rule, "", "not", None, None, False, True, note, reason, (result,)
                )
            return ClauseResult(
                kind, rule, "", "not", None, None, not result.passed, False, None, reason, (result,)
            )

        return check_not
    word = "all_of" if isinstance(condition, AllOf) else "any_of"
    children = tuple(
        compile_condition(child, f"{rule}.{word}[{index}]", kind)
        for index, child in enumerate(condition.conditions)
    )
    if isinstance(condition, AnyOf):
        return _any_of(children, rule, kind, reason)
    return _all_of(children, rule, kind, reason)


def _all_of(children: tuple[Check, ...], rule: str, kind: str, reason: str | None) -> Check:
    def check(claims: Claims, now: datetime) -> ClauseResult:
        results = tuple(child(claims, now) for child in children)
        failed = sum(1 for r in results if not r.passed)
        absent = failed > 0 and all(r.passed or r.absent for r in results)
        note = f"{failed} of {len(results)} failed" if failed else None
        return ClauseResult(
            kind, rule, "", "all_of", None, None, not failed, absent, note, reason, results
        )

    return check


def _any_of(children: tuple[Check, ...], rule: str, kind: str, reason: str | None) -> Check:
    def check(claims: Claims, now: datetime) -> ClauseResult:
        results = tuple(child(claims, now) for child in children)
        passed = any(r.passed for r in results)
        absent = not passed and any(r.absent for r in results)
        note = None if passed else f"none of {len(results)} passed"
        return ClauseResult(
            kind, rule, "", "any_of", None, None, passed, absent, note, reason, results
        )

    return check


# --- first-class clauses --------------------------------------------------------------------


def _first_class(kind: str, where: tuple[str, ...], claim: str, op: Operator, value: Any) -> Check:
    """A comparison that a first-class policy key (signer, minimum_tcb) stands for."""
    return _compile_compare(Compare(claim, op, value), jsonpath(where), kind)


def signer_checks(signer: SignerRule | None, base: tuple[str, ...]) -> list[Check]:
    rule = signer or SignerRule()
    where = (*base, "signer")
    checks: list[Check] = []
    if rule.origin is not None:
        checks.append(
            _first_class(
                "signer", (*where, "origin"), "signer.origin", Operator.EQUALS, rule.origin.value
            )
        )
    if rule.roots is not None:
        checks.append(
            _first_class("signer", (*where, "roots"), "signer.root", Operator.IN, rule.roots)
        )
    else:
        checks.append(_pinned_root_check(jsonpath(where if signer else base)))
    if rule.keys is not None:
        checks.append(
            _first_class("signer", (*where, "keys"), "signer.key", Operator.IN, rule.keys)
        )
    return checks


def _pinned_root_check(rule: str) -> Check:
    expected = "a pinned vendor root"

    def check(claims: Claims, now: datetime) -> ClauseResult:
        root = claims.signer.root
        if root.startswith(INSECURE_ROOT_PREFIX):
            note = "a test root; admitted only when signer.roots names it"
            return ClauseResult(
                "signer", rule, "signer.root", "is", expected, root, False, note=note
            )
        return ClauseResult("signer", rule, "signer.root", "is", expected, root, True)

    return check


def debug_check(section: Section, base: tuple[str, ...]) -> Check:
    if section.insecure_allow_debug:
        rule = jsonpath((*base, "insecure_allow_debug"))

        def allowed(claims: Claims, now: datetime) -> ClauseResult:
            note = "debug admitted by insecure_allow_debug: true" if claims.debug else None
            return ClauseResult(
                "debug", rule, "debug", "any", "true or false", claims.debug, True, note=note
            )

        return allowed
    rule = jsonpath(base)
    refused = (
        "debug mode lets the host read the guest's memory; refused unless the section sets "
        "insecure_allow_debug: true"
    )

    def check(claims: Claims, now: datetime) -> ClauseResult:
        debug = claims.debug
        return ClauseResult(
            "debug", rule, "debug", "==", False, debug, not debug, note=refused if debug else None
        )

    return check


def reference_check(policy: Policy, section: Section, where: tuple[str, ...]) -> Check:
    rule = jsonpath(where)
    expected = list(section.reference_values)
    # Entries grouped by the claim paths they pin, so one dict lookup tests a whole group.
    groups: dict[tuple[str, ...], dict[tuple[str | None, ...], ReferenceMatch]] = {}
    entries: list[tuple[str, tuple[tuple[str, str], ...]]] = []
    for name in expected:
        for number, entry in enumerate(policy.reference_set(name).entries, start=1):
            match = ReferenceMatch(name, number, entry.label)
            paths = tuple(path for path, _ in entry.values)
            groups.setdefault(paths, {}).setdefault(tuple(v for _, v in entry.values), match)
            entries.append((_entry_name(match), entry.values))
    getters = {path: compile_getter(path) for paths in groups for path in paths}
    all_paths = tuple(getters)

    def check(claims: Claims, now: datetime) -> ClauseResult:
        found = {path: get(claims) for path, get in getters.items()}
        lowered = {p: v.lower() if type(v) is str else None for p, v in found.items()}
        for paths, table in groups.items():
            match = table.get(tuple(lowered[p] for p in paths))
            if match is not None:
                claim, shown = _shown(paths, found)
                note = _entry_name(match)
                return ClauseResult(
                    "reference_values",
                    rule,
                    claim,
                    "matches",
                    expected,
                    shown,
                    True,
                    note=note,
                    entry=match,
                )
        claim, shown = _shown(all_paths, found)
        absent = any(v is _MISSING for v in found.values())
        note = _closest(lowered, entries)
        return ClauseResult(
            "reference_values", rule, claim, "matches", expected, shown, False, absent, note
        )

    return check


def _entry_name(match: ReferenceMatch) -> str:
    return f"{match.set}: {match.label or f'entry {match.number}'}"


def _shown(paths: tuple[str, ...], found: Mapping[str, Any]) -> tuple[str, Any]:
    """The claim column and found value of a reference clause: one value, or a mapping."""
    values = {p: None if found[p] is _MISSING else found[p] for p in paths}
    if len(paths) == 1:
        return paths[0], values[paths[0]]
    return ", ".join(paths), values


def _closest(
    found: Mapping[str, str | None], entries: list[tuple[str, tuple[tuple[str, str], ...]]]
) -> str:
    """Name the entry that differs in the fewest claims, and where it differs."""
    best_label, best_diff = "", list[str]()
    for label, values in entries:
        diff = [path for path, value in values if found.get(path) != value]
        if not best_label or len(diff) < len(best_diff):
            best_label, best_diff = label, diff
    missing = [path for path, value in found.items() if value is None]
    if missing:
        return f"{ABSENT}: {', '.join(missing)}"
    return f"no entry matches; closest is {best_label}, which differs in {', '.join(best_diff)}"


def tcb_checks(tee: str, tcb: MinimumTcb, where: tuple[str, ...]) -> list[Check]:
    checks = [
        _first_class(
            "minimum_tcb", (*where, key), minimum_claim(tee, key), Operator.AT_LEAST, minimum
        )
        for key, minimum in tcb.minimums
    ]
    if tcb.tcb_status is not None:
        checks.append(
            _first_class(
                "minimum_tcb", (*where, "tcb_status"), "tcb_status", Operator.IN, tcb.tcb_status
            )
        )
    advisories = (*where, "advisory_ids")
    if tcb.accepted_advisories is not None:
        checks.append(
            _advisory_check(tcb.accepted_advisories, jsonpath((*advisories, "accept")), True)
        )
    if tcb.refused_advisories is not None:
        checks.append(
            _advisory_check(tcb.refused_advisories, jsonpath((*advisories, "refuse")), False)
        )
    return checks


def _advisory_check(listed: tuple[str, ...], rule: str, accept: bool) -> Check:
    """accept: every advisory found is listed. refuse: no advisory found is listed."""
    members = frozenset(listed)
    op = "all in" if accept else "none in"
    get = compile_getter("advisory_ids")
    expected = list(listed)

    def check(claims: Claims, now: datetime) -> ClauseResult:
        found = get(claims)
        if found is _MISSING:
            return ClauseResult(
                "minimum_tcb", rule, "advisory_ids", op, expected, None, False, True, ABSENT
            )
        if not isinstance(found, tuple) or any(type(a) is not str for a in found):
            what = _kind(found) if not isinstance(found, tuple) else "a list with a non-string"
            note = f"found {what}, not a list of advisory IDs"
            return ClauseResult(
                "minimum_tcb", rule, "advisory_ids", op, expected, found, False, note=note
            )
        offending = [a for a in found if (a in members) != accept]
        listed = ("not accepted: " if accept else "refused: ") + ", ".join(map(str, offending))
        return ClauseResult(
            "minimum_tcb",
            rule,
            "advisory_ids",
            op,
            expected,
            found,
            not offending,
            note=listed if offending else None,
        )

    return check


def age_check(what: str, limit: Duration, where: tuple[str, ...]) -> Check:
    rule = jsonpath(where)
    attribute = f"{what}_time"
    seconds = limit.seconds
    op = "age <="

    def check(claims: Claims, now: datetime) -> ClauseResult:
        instant: datetime | None = getattr(claims, attribute)
        if instant is None:
            note = (
                f"{what} time unknown: the {claims.tee.value} {what} does not say when it was "
                f"issued, so a maximum age cannot be met"
            )
            return ClauseResult(
                "freshness", rule, attribute, op, limit.text, None, False, True, note
            )
        age = (now - instant).total_seconds()
        found = iso(instant)
        if age < -CLOCK_SKEW_SECONDS:
            note = f"dated {_age_text(-age)} after the evaluation instant"
            return ClauseResult(
                "freshness", rule, attribute, op, limit.text, found, False, note=note
            )
        return ClauseResult(
            "freshness",
            rule,
            attribute,
            op,
            limit.text,
            found,
            age <= seconds,
            note=f"age {_age_text(age)}",
        )

    return check


def _age_text(seconds: float) -> str:
    whole = max(0, int(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days}d"] if days else []
    parts += [f"{hours}h"] if hours else []
    parts += [f"{minutes}m"] if minutes else []
    parts += [f"{secs}s"] if secs or not parts else []
    return " ".join(parts)
