"""Release policies: the model, the loader, the pure evaluator and the linter.

Guide for policy authors: docs/policies.md. Public surface::

    policy = load_policy("policies/snp-production-disk-key.yaml")  # PolicyError if invalid
    decision = evaluate(policy, claims, now)  # .allow, .explanation, .failures, .to_error()
    warnings = lint(policy)  # LintWarning(code, rule, message, acknowledged)
"""

from broker.policy.evaluate import ClauseResult, Decision, evaluate
from broker.policy.lint import LintWarning, lint
from broker.policy.loader import load_policy, load_policy_text, read_document
from broker.policy.model import Policy

__all__ = [
    "ClauseResult",
    "Decision",
    "LintWarning",
    "Policy",
    "evaluate",
    "lint",
    "load_policy",
    "load_policy_text",
    "read_document",
]
