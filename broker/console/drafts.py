"""A policy draft as the editor holds it: YAML text, loaded and linted (pure)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import yaml

from broker.errors import PolicyError
from broker.policy.lint import lint
from broker.policy.loader import load_policy_text
from broker.policy.model import Policy

#: What a new draft starts from: deny everything until a section admits something.
NEW_DRAFT = """format: keybroker-policy/1
name: my-policy
version: 1
admit: {}
"""


@dataclass(frozen=True, slots=True)
class Checked:
    """A draft loaded (``policy``) or not, with every problem and every lint warning."""

    text: str
    policy: Policy | None
    problems: list[dict[str, Any]] = field(default_factory=list)
    """Each ``{line, column, path, message}`` (``broker.errors.PolicyError``)."""
    warnings: list[dict[str, Any]] = field(default_factory=list)
    """Each ``{code, rule, message, acknowledged}`` (``broker.policy.lint``)."""

    @property
    def digest(self) -> str:
        """SHA-256 of the text: which draft a replay was run on."""
        return digest_of(self.text)

    def to_json(self) -> dict[str, Any]:
        return {
            "valid": self.policy is not None,
            "problems": self.problems,
            "warnings": self.warnings,
        }


def digest_of(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check(text: str, *, is_json: bool = False) -> Checked:
    """Load ``text`` as a policy (YAML, or JSON for a stored version) and lint it."""
    try:
        policy = load_policy_text(text, source="draft", is_json=is_json)
    except PolicyError as exc:
        problems = exc.problems or [
            {"line": None, "column": None, "path": "$", "message": exc.detail}
        ]
        return Checked(text, None, [_problem(p) for p in problems])
    return Checked(text, policy, [], [w.to_json() for w in lint(policy)])


def _problem(problem: dict[str, Any]) -> dict[str, Any]:
    return {
        "line": problem.get("line"),
        "column": problem.get("column"),
        "path": problem.get("path"),
        "message": problem.get("message"),
    }


#: The members a draft shows first, in this order; the others follow as stored.
_FIRST = ("format", "name", "version", "description")


def as_yaml(document: str) -> str:
    """A stored version (canonical JSON, members sorted) as YAML an author edits: what names
    the policy first, then the rest."""
    content = yaml.safe_load(document)
    ordered = {k: content[k] for k in _FIRST if k in content}
    ordered.update((k, v) for k, v in content.items() if k not in ordered)
    return yaml.safe_dump(ordered, sort_keys=False, allow_unicode=True, width=1000)
