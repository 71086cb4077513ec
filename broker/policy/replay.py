"""What a draft policy would have done to the releases actually served (docs/policies.md,
"Replaying a draft over history").

:class:`Replay` is fed the audit trail in the order it was written, one record at a time
(``feed``), and keeps only what the next records can need: the claims of each attestation
whose token may still be presented (a release record names its token, whose attest record
holds the claims), and one :class:`~broker.policy.limits.Counters` per key for the draft's
release limits. Each release that a policy decided (allowed, or denied by a policy clause)
is decided again by the draft, on the claims of its token (a one-request release holds its
own) and at the instant it was made, so freshness is judged as it was then. The report
counts the releases that would now be denied and the denials that would now be allowed,
grouped by the clause that decides, with sample request ids. Releases refused for other
reasons (a disabled key, a bad token, an unavailable HSM) are counted as skipped: a policy
would not have changed them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from broker.evidence.claims import Claims, Signer, Tee
from broker.policy.evaluate import evaluate
from broker.policy.limits import Counters, instance, refusal_clause, unidentified_clause
from broker.policy.model import Policy
from broker.timeutil import iso

#: Request ids kept per group of the report.
SAMPLES = 5
#: The problem type of a policy's denial, the only denial a draft can turn into a release.
POLICY_DENIED = "policy-denied"


@dataclass
class Group:
    """Releases whose outcome changes for the same clause."""

    rule: str
    count: int = 0
    samples: list[str] = field(default_factory=list)

    def add(self, request_id: str | None) -> None:
        self.count += 1
        if request_id is not None and len(self.samples) < SAMPLES:
            self.samples.append(request_id)

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "count": self.count, "sample_request_ids": self.samples}


@dataclass
class Change:
    """Releases whose outcome the draft changes one way, grouped by clause."""

    total: int = 0
    groups: dict[str, Group] = field(default_factory=dict)

    def add(self, rules: list[str], request_id: str | None) -> None:
        self.total += 1
        for rule in dict.fromkeys(rules) or ("(none)",):
            self.groups.setdefault(rule, Group(rule)).add(request_id)

    def to_json(self) -> dict[str, Any]:
        ordered = sorted(self.groups.values(), key=lambda g: (-g.count, g.rule))
        return {"total": self.total, "by_clause": [group.to_json() for group in ordered]}


def claims_of_record(body: Mapping[str, Any]) -> Claims | None:
    """The claims an attest record holds (``claims``: ``tee``, ``signer``, ``debug`` and the
    fields; ``evidence_time`` and ``collateral_time`` beside them since they are recorded),
    or None when it holds none (a failed attestation)."""
    document = body.get("claims")
    if not isinstance(document, Mapping):
        return None
    fields = {k: v for k, v in document.items() if k not in ("tee", "signer", "debug")}
    return Claims(
        tee=Tee(document["tee"]),
        signer=Signer.from_json(document["signer"]),
        debug=bool(document["debug"]),
        fields=fields,
        evidence_time=_instant(body.get("evidence_time")),
        collateral_time=_instant(body.get("collateral_time")),
    )


def _instant(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


class Replay:
    """The draft decided again over a stream of audit records (oldest first).

    ``key``: only releases of that key; else only releases decided by a policy of the
    draft's name. ``since``: releases at or after it (earlier attest records are still read
    for the claims of tokens used after it). ``token_lifetime``: how long a token may be
    presented after its attestation, so how long its claims are kept.
    """

    def __init__(
        self, draft: Policy, since: datetime, token_lifetime: timedelta, key: str | None = None
    ) -> None:
        self.draft = draft
        self.since = since
        self.key = key
        self.lifetime = token_lifetime
        self.claims: OrderedDict[str, tuple[datetime, Claims | Mapping[str, Any]]] = OrderedDict()
        """Each live token's attestation instant, and its record's body until a release reads
        it into claims."""
        self.counters: dict[str, Counters] = {}
        self.records = 0
        self.replayed = 0
        self.unchanged = {"allow": 0, "deny": 0}
        self.skipped: dict[str, int] = {}
        self.newly_denied = Change()
        self.newly_allowed = Change()
        self.first: datetime | None = None
        self.last: datetime | None = None

    def feed(
        self,
        *,
        at: datetime,
        kind: str,
        decision: str,
        request_id: str | None,
        key_name: str | None,
        body: Mapping[str, Any],
    ) -> None:
        """One audit record, in the order of the trail."""
        self.records += 1
        if kind == "attest":
            self._remember(at, decision, body)
        elif kind == "release" and at >= self.since:
            self._release(at, decision, request_id, key_name, body)

    def _remember(self, at: datetime, decision: str, body: Mapping[str, Any]) -> None:
        while self.claims:  # tokens issued before at - lifetime can no longer be used
            oldest = next(iter(self.claims.values()))[0]
            if oldest >= at - self.lifetime:
                break
            self.claims.popitem(last=False)
        token_id = body.get("token_id")
        if decision == "allow" and isinstance(token_id, str) and "claims" in body:
            # Read into Claims only when a release in scope uses the token: most tokens of
            # a trail are other keys' and other policies'.
            self.claims[token_id] = (at, body)

    def _skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1

    def _in_scope(self, key_name: str | None, body: Mapping[str, Any]) -> bool:
        """Whether a release record is one this replay decides again."""
        if self.key is not None:
            return key_name == self.key
        decided_by = body.get("policy")
        return isinstance(decided_by, Mapping) and decided_by.get("name") == self.draft.name

    def _release(
        self,
        at: datetime,
        decision: str,
        request_id: str | None,
        key_name: str | None,
        body: Mapping[str, Any],
    ) -> None:
        if not self._in_scope(key_name, body):
            return
        error = body.get("error")
        error_type = str(error.get("type", "")) if isinstance(error, Mapping) else ""
        if decision != "allow" and error_type != POLICY_DENIED:
            self._skip(f"not decided by a policy ({error_type or decision})")
            return
        claims = self._claims_of_release(body)
        if claims is None:
            self._skip("claims not found (attestation before the window or not recorded)")
            return
        if self.first is None:
            self.first = at
        self.last = at
        self.replayed += 1
        failures = self._draft_failures(claims, at, key_name)
        allowed = not failures
        if allowed == (decision == "allow"):
            self.unchanged["allow" if allowed else "deny"] += 1
        elif allowed:
            reasons = body.get("reasons")
            then = [
                str(reason.get("rule"))
                for reason in (reasons if isinstance(reasons, list) else [])
                if isinstance(reason, Mapping)
            ]
            self.newly_allowed.add(then, request_id)
        else:
            self.newly_denied.add(failures, request_id)

    def _claims_of_release(self, body: Mapping[str, Any]) -> Claims | None:
        """The claims a release was decided on: its own for a one-request release (one record
        holds the attestation and the release), else those its token's attest record holds."""
        if "claims" in body:
            return claims_of_record(body)
        token_id = str(body.get("token_id"))
        remembered = self.claims.get(token_id)
        if remembered is None:
            return None
        at, held = remembered
        if isinstance(held, Claims):
            return held
        claims = claims_of_record(held)
        if claims is not None:
            self.claims[token_id] = (at, claims)
        return claims

    def _draft_failures(self, claims: Claims, at: datetime, key_name: str | None) -> list[str]:
        """The rules of the draft that deny these claims at ``at``; its release limits count
        the releases it allows, per key, in the order of the trail."""
        failures = [clause.rule for clause in evaluate(self.draft, claims, at).failures]
        limits = self.draft.limits
        if failures or limits is None or key_name is None:
            return failures
        who = instance(claims)
        if who is None and limits.per_instance:
            return [unidentified_clause(claims.tee.value, limits).rule]
        refusal = self.counters.setdefault(key_name, Counters()).take(limits, who, at)
        return [] if refusal is None else [refusal_clause(refusal, limits, who).rule]

    def report(self) -> dict[str, Any]:
        draft = self.draft
        return {
            "draft": {"name": draft.name, "version": draft.version, "sha256": draft.digest()},
            "key": self.key,
            "since": iso(self.since),
            "records_read": self.records,
            "releases_replayed": self.replayed,
            "unchanged": dict(self.unchanged),
            "newly_denied": self.newly_denied.to_json(),
            "newly_allowed": self.newly_allowed.to_json(),
            "skipped": dict(sorted(self.skipped.items())),
        }
