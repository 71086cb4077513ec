"""Pure policy evaluation: ``evaluate(policy, claims, now) -> Decision``.

The policy is compiled once into a tuple of closures per section (claim paths pre-split,
sets pre-built), so an evaluation is a few dozen dictionary lookups and comparisons. Every
clause is evaluated, passing or not, and yields a :class:`ClauseResult` with the claim path,
the operator, the expected and the found value; a denial therefore lists every failed reason
at once (ARCHITECTURE §8.2).

Semantics (docs/policies.md):

* Deny by default: claims of a TEE with no section (and no ``any`` section) are denied, and
  ``allow`` is true only when every top-level clause of the chosen section passes.
* A claim that is absent or null satisfies no comparison; its found value is "claim absent".
  Conditions use three-valued logic, so an absent claim does not pass under ``not`` either:
  ``not`` of an undetermined condition stays undetermined (a failure). Only ``exists``
  tests absence.
* Debug guests are refused unless the section says ``insecure_allow_debug: true``; evidence
  chained to an ``insecure-test-`` root is refused unless ``signer.roots`` names that root.
* Freshness compares ``Claims.evidence_time`` / ``collateral_time`` with ``now``; when the
  time is unknown a required maximum age cannot be met and the clause says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from broker.errors import PolicyDenied
from broker.evidence.claims import Claims, thaw
from broker.policy.clauses import (
    ABSENT,
    Check,
    ClauseResult,
    age_check,
    compile_condition,
    debug_check,
    reference_check,
    signer_checks,
    tcb_checks,
)
from broker.policy.model import Policy, Section, jsonpath
from broker.timeutil import iso

__all__ = ["ABSENT", "ClauseResult", "Decision", "compile_policy", "describe", "evaluate"]


@dataclass(frozen=True, slots=True)
class Program:
    sections: Mapping[str, tuple[Check, ...]]
    admitted: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Decision:
    allow: bool
    explanation: tuple[ClauseResult, ...]
    """Every top-level clause of the section that applied, in policy order, the TEE first;
    each with its claim path, operator, expected and found value, and pass or fail."""
    policy_name: str
    policy_version: int
    policy_digest: str
    tee: str
    section: str | None
    at: datetime

    @property
    def failures(self) -> tuple[ClauseResult, ...]:
        """The clauses that denied the request (empty when allowed)."""
        return tuple(clause for clause in self.explanation if not clause.passed)

    def to_json(self) -> dict[str, Any]:
        return {
            "allow": self.allow,
            "policy": {
                "name": self.policy_name,
                "version": self.policy_version,
                "sha256": self.policy_digest,
            },
            "tee": self.tee,
            "section": self.section,
            "at": iso(self.at),
            "explanation": [clause.to_json() for clause in self.explanation],
            "failures": [clause.to_json() for clause in self.failures],
        }

    def to_error(self) -> PolicyDenied:
        """The error the release flow raises on denial, with every reason."""
        failures = self.failures
        detail = f"policy {self.policy_name} v{self.policy_version} denied: " + "; ".join(
            describe(clause) for clause in failures
        )
        return PolicyDenied(detail, [clause.to_json() for clause in failures])


def describe(clause: ClauseResult) -> str:
    """One line: ``reported_tcb.snp >= 7, found 5``."""
    if clause.children and not clause.claim:
        inner = ", ".join(describe(c) for c in clause.children if not c.passed) or "…"
        text = f"{clause.op} [{inner}]"
    else:
        found = ABSENT if clause.absent and clause.found is None else _short(clause.found)
        text = f"{clause.claim} {clause.op} {_short(clause.expected)}, found {found}"
    if clause.note:
        text += f" ({clause.note})"
    return text


def _short(value: Any) -> str:
    value = thaw(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items()) + "}"
    return "null" if value is None else str(value)


# --- evaluation -----------------------------------------------------------------------------


def evaluate(policy: Policy, claims: Claims, now: datetime) -> Decision:
    """Decide whether ``claims`` satisfy ``policy`` at the instant ``now`` (timezone-aware)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    program: Program = compile_policy(policy).program
    tee = claims.tee.value
    section = tee if tee in program.sections else "any" if "any" in program.sections else None
    tee_clause = ClauseResult(
        "tee",
        "$.admit",
        "tee",
        "in",
        program.admitted,
        tee,
        section is not None,
        note=_tee_note(tee, section),
    )
    if section is None:
        clauses: tuple[ClauseResult, ...] = (tee_clause,)
    else:
        clauses = (tee_clause, *[check(claims, now) for check in program.sections[section]])
    return Decision(
        allow=all(clause.passed for clause in clauses),
        explanation=clauses,
        policy_name=policy.name,
        policy_version=policy.version,
        policy_digest=policy.digest(),
        tee=tee,
        section=section,
        at=now,
    )


def _tee_note(tee: str, section: str | None) -> str | None:
    if section is None:
        return f"this policy has no section for {tee} and no 'any' section"
    if section != tee:
        return f"admitted by the 'any' section ({tee} has no section of its own)"
    return None


def compile_policy(policy: Policy) -> Policy:
    """Attach the compiled program to ``policy`` (once) and return it."""
    if policy.program is None:
        object.__setattr__(policy, "program", _compile(policy))
    return policy


def _compile(policy: Policy) -> Program:
    sections = {s.tee: tuple(_compile_section(policy, s)) for s in policy.sections}
    return Program(sections=sections, admitted=tuple(sections))


def _compile_section(policy: Policy, section: Section) -> list[Check]:
    base = ("admit", section.tee)
    checks = signer_checks(section.signer, base)
    checks.append(debug_check(section, base))
    if section.reference_values:
        checks.append(reference_check(policy, section, (*base, "reference_values")))
    if section.minimum_tcb is not None:
        checks.extend(tcb_checks(section.tee, section.minimum_tcb, (*base, "minimum_tcb")))
    if section.freshness is not None:
        fresh = section.freshness
        where = (*base, "freshness")
        if fresh.max_evidence_age is not None:
            checks.append(
                age_check("evidence", fresh.max_evidence_age, (*where, "max_evidence_age"))
            )
        if fresh.max_collateral_age is not None:
            checks.append(
                age_check("collateral", fresh.max_collateral_age, (*where, "max_collateral_age"))
            )
    for index, condition in enumerate(section.require):
        checks.append(compile_condition(condition, jsonpath((*base, "require", index)), "require"))
    return checks
