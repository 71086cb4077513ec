"""Release policies as stored in PostgreSQL, compiled once and cached by digest.

A published policy is stored as the canonical JSON of its self-contained form (shared
reference files inlined) with its SHA-256; loading checks that the digest still matches, so a
row edited behind the broker's back is refused rather than evaluated. The database refuses
such an edit in the first place (migration 0003: published versions are immutable), which is
what lets a release take the compiled policy by the digest its context names without reading
the document again (:meth:`PolicyCache.cached`). When the document is at hand,
:meth:`PolicyCache.get` serves the compiled policy only for that very document: the digest
check is never skipped for a document it did not pass.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from broker.errors import PolicyError, StoredPolicyInvalid
from broker.evidence.claims import Claims
from broker.lru import Lru
from broker.policy.evaluate import Decision, evaluate
from broker.policy.loader import load_policy_text
from broker.policy.model import Policy, canonical_json


def stored_form(policy: Policy) -> tuple[str, str]:
    """The text and digest under which ``policy`` is published."""
    return canonical_json(policy.to_json()).decode("utf-8"), policy.digest()


class PolicyCache:
    def __init__(self, capacity: int = 1024) -> None:
        self._compiled: Lru[str, tuple[str, Policy]] = Lru(capacity)

    def cached(self, digest: str) -> Policy | None:
        """The policy compiled from a document with ``digest``, when this process has one."""
        entry = self._compiled.get(digest)
        return None if entry is None else entry[1]

    def get(self, document: str, digest: str) -> Policy:
        """``document`` compiled, if its policy has ``digest``; ``StoredPolicyInvalid``
        otherwise. Remembered by digest, and served again only for the same document."""
        entry = self._compiled.get(digest)
        if entry is not None and entry[0] == document:
            return entry[1]
        try:
            policy = load_policy_text(document, source="<stored policy>", is_json=True)
        except PolicyError:
            raise StoredPolicyInvalid(
                f"stored policy with digest {digest[:16]}... no longer loads"
            ) from None
        if policy.digest() != digest:
            raise StoredPolicyInvalid(
                f"stored policy {policy.name} v{policy.version} does not match its digest"
            )
        self._compiled.put(digest, (document, policy))
        return policy

    @staticmethod
    def evaluate(policy: Policy, claims: Claims, now: datetime) -> Decision:
        return evaluate(policy, claims, now)


def audit_summary(decision: Decision) -> dict[str, Any]:
    """What the audit record keeps of a decision: the policy identity and every failure."""
    return {
        "policy": {
            "name": decision.policy_name,
            "version": decision.policy_version,
            "sha256": decision.policy_digest,
        },
        "section": decision.section,
        "clauses_evaluated": len(decision.explanation),
        "reasons": [clause.to_json() for clause in decision.failures],
        "matched_references": [
            clause.entry.to_json() for clause in decision.explanation if clause.entry is not None
        ],
    }
