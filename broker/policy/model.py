"""The release-policy model: frozen dataclasses, built from a schema-valid document.

A :class:`Policy` is what ``keybroker-policy/1`` documents mean once their shared reference
files are resolved. :meth:`Policy.to_json` gives its canonical form, which is itself a valid
policy document (reference sets inlined, hex in lowercase), and :meth:`Policy.digest` the
SHA-256 of that form serialised as RFC 8785 canonical JSON (:mod:`broker.jcs`), which the
audit trail records with every decision.

:meth:`Policy.from_document` trusts the document's *shape* (the loader validated it against
``schema.json``) and checks what a schema cannot: that named reference sets exist and belong
to the section's TEE. It raises :class:`PolicyError` whose problems carry JSON paths; the
loader adds file, line and column.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import timedelta
from enum import StrEnum
from typing import Any

from broker.errors import PolicyError
from broker.evidence.claims import Signer, SignerOrigin
from broker.jcs import canonicalize
from broker.policy.provenance import Provenance
from broker.policy.signatures import ReferenceSetRules, SignedReference

POLICY_FORMAT = "keybroker-policy/1"
REFERENCES_FORMAT = "keybroker-references/1"

#: Section keys under ``admit``: one per TEE, and ``any`` for TEEs without their own.
TEE_SECTIONS = ("snp", "tdx", "sgx", "nitro", "snp-vtpm", "tdx-vtpm", "tpm")
#: Sections whose minimum TCB is SNP's REPORTED_TCB (snp-vtpm: the paravisor's report).
SNP_TCB_SECTIONS = frozenset({"snp", "snp-vtpm"})
ANY_SECTION = "any"

#: SNP minimum-TCB components, in the order of the TCB_VERSION structure (SNP ABI spec,
#: table "TCB_VERSION"); they are compared with the REPORTED_TCB, the TCB the VCEK/VLEK
#: endorses and the verifier has matched against the certificate.
SNP_TCB_COMPONENTS = ("bootloader", "tee", "snp", "microcode", "fmc")
SNP_TCB_CLAIM = "reported_tcb"
#: Intel minimums that are plain "at least" numbers, in display order.
INTEL_MINIMUMS = ("tcb_evaluation_data_number", "isv_svn")

#: Claims that identify the code itself, per TEE: a section constrains "the measurement"
#: when it names reference values or requires one of these (lint ``no-measurement``).
#: Behind a vTPM the guest's code is measured into the PCRs (the hardware report's
#: measurement is the paravisor's, the same for every guest).
SHA256_PCR_CLAIMS = frozenset(f"tpm.pcrs.sha256.{index}" for index in range(24))
MEASUREMENT_CLAIMS: Mapping[str, frozenset[str]] = {
    "snp": frozenset({"measurement"}),
    "tdx": frozenset({"mr_td"}),
    "sgx": frozenset({"mr_enclave", "mr_signer"}),
    "nitro": frozenset({"pcrs.0", "pcrs.8"}),
    "snp-vtpm": SHA256_PCR_CLAIMS,
    "tdx-vtpm": SHA256_PCR_CLAIMS,
    "tpm": SHA256_PCR_CLAIMS,
}

#: The attributes of :class:`broker.evidence.claims.Signer` that ``signer.NAME`` reads.
SIGNER_ATTRIBUTES = frozenset(f.name for f in fields(Signer))

_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Operator(StrEnum):
    """Comparison operators of a condition; ``symbol`` is how explanations print them."""

    EQUALS = "equals"
    IN = "in"
    AT_LEAST = "at_least"
    GREATER_THAN = "greater_than"
    AT_MOST = "at_most"
    LESS_THAN = "less_than"
    HEX_EQUALS = "hex_equals"
    HEX_IN = "hex_in"
    EXISTS = "exists"

    @property
    def symbol(self) -> str:
        return _SYMBOLS[self]


_SYMBOLS = {
    Operator.EQUALS: "==",
    Operator.IN: "in",
    Operator.AT_LEAST: ">=",
    Operator.GREATER_THAN: ">",
    Operator.AT_MOST: "<=",
    Operator.LESS_THAN: "<",
    Operator.HEX_EQUALS: "hex ==",
    Operator.HEX_IN: "hex in",
    Operator.EXISTS: "exists",
}

_OPERATOR_KEYS = frozenset(op.value for op in Operator)

Scalar = str | int | bool


def jsonpath(parts: Sequence[str | int]) -> str:
    """``("admit", "snp", "require", 0)`` -> ``$.admit.snp.require[0]`` (RFC 9535 style)."""
    out = ["$"]
    for part in parts:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif part.isidentifier():
            out.append(f".{part}")
        else:
            out.append(f"[{json.dumps(part)}]")
    return "".join(out)


def canonical_json(document: Any) -> bytes:
    """RFC 8785 (JCS) bytes of a policy document (:mod:`broker.jcs`, which the evidence
    binding and the audit trail also use): sorted keys, no insignificant whitespace, UTF-8."""
    return canonicalize(document)


@dataclass(frozen=True, slots=True)
class Duration:
    """A duration as written (``5m``), kept verbatim so the canonical form is the author's."""

    text: str

    @property
    def seconds(self) -> int:
        return int(self.text[:-1]) * _DURATION_UNITS[self.text[-1]]

    @property
    def delta(self) -> timedelta:
        return timedelta(seconds=self.seconds)


# --- Conditions -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Compare:
    """``{claim: PATH, OPERATOR: VALUE}``."""

    claim: str
    op: Operator
    value: Scalar | tuple[Scalar, ...]
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return _with_reason({"claim": self.claim, self.op.value: value}, self.reason)


@dataclass(frozen=True, slots=True)
class AllOf:
    conditions: tuple[Condition, ...]
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return _with_reason({"all_of": [c.to_json() for c in self.conditions]}, self.reason)


@dataclass(frozen=True, slots=True)
class AnyOf:
    conditions: tuple[Condition, ...]
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return _with_reason({"any_of": [c.to_json() for c in self.conditions]}, self.reason)


@dataclass(frozen=True, slots=True)
class Not:
    condition: Condition
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return _with_reason({"not": self.condition.to_json()}, self.reason)


Condition = Compare | AllOf | AnyOf | Not


def _with_reason(doc: dict[str, Any], reason: str | None) -> dict[str, Any]:
    if reason is not None:
        doc["reason"] = reason
    return doc


def condition_from_json(doc: Mapping[str, Any]) -> Condition:
    reason = doc.get("reason")
    if "all_of" in doc:
        return AllOf(tuple(condition_from_json(c) for c in doc["all_of"]), reason)
    if "any_of" in doc:
        return AnyOf(tuple(condition_from_json(c) for c in doc["any_of"]), reason)
    if "not" in doc:
        return Not(condition_from_json(doc["not"]), reason)
    op = next(Operator(key) for key in doc if key in _OPERATOR_KEYS)
    value = doc[op.value]
    if op is Operator.HEX_EQUALS:
        value = value.lower()
    elif op is Operator.HEX_IN:
        value = tuple(dict.fromkeys(v.lower() for v in value))
    elif op is Operator.IN:
        value = tuple(value)
    return Compare(doc["claim"], op, value, reason)


# --- Section parts --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignerRule:
    origin: SignerOrigin | None = None
    roots: tuple[str, ...] | None = None
    keys: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        if self.origin is not None:
            doc["origin"] = self.origin.value
        if self.roots is not None:
            doc["roots"] = list(self.roots)
        if self.keys is not None:
            doc["keys"] = list(self.keys)
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> SignerRule:
        origin = doc.get("origin")
        return cls(
            origin=None if origin is None else SignerOrigin(origin),
            roots=_tuple_or_none(doc.get("roots")),
            keys=_tuple_or_none(doc.get("keys")),
        )


@dataclass(frozen=True, slots=True)
class MinimumTcb:
    """SNP: per-component minimums of REPORTED_TCB. Intel: accepted TCB statuses, advisory
    IDs accepted (allow-list) or refused (deny-list), and "at least" numbers."""

    minimums: tuple[tuple[str, int], ...] = ()
    tcb_status: tuple[str, ...] | None = None
    accepted_advisories: tuple[str, ...] | None = None
    refused_advisories: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = dict(self.minimums)
        if self.tcb_status is not None:
            doc["tcb_status"] = list(self.tcb_status)
        advisories: dict[str, Any] = {}
        if self.accepted_advisories is not None:
            advisories["accept"] = list(self.accepted_advisories)
        if self.refused_advisories is not None:
            advisories["refuse"] = list(self.refused_advisories)
        if advisories:
            doc["advisory_ids"] = advisories
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> MinimumTcb:
        order = (*SNP_TCB_COMPONENTS, *INTEL_MINIMUMS)
        advisories = doc.get("advisory_ids", {})
        return cls(
            minimums=tuple((key, int(doc[key])) for key in order if key in doc),
            tcb_status=_tuple_or_none(doc.get("tcb_status")),
            accepted_advisories=_tuple_or_none(advisories.get("accept")),
            refused_advisories=_tuple_or_none(advisories.get("refuse")),
        )


def minimum_claim(tee: str, key: str) -> str:
    """The claim path a ``minimum_tcb`` key constrains in a section of ``tee``."""
    return f"{SNP_TCB_CLAIM}.{key}" if tee in SNP_TCB_SECTIONS else key


@dataclass(frozen=True, slots=True)
class Freshness:
    max_evidence_age: Duration | None = None
    max_collateral_age: Duration | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        if self.max_evidence_age is not None:
            doc["max_evidence_age"] = self.max_evidence_age.text
        if self.max_collateral_age is not None:
            doc["max_collateral_age"] = self.max_collateral_age.text
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Freshness:
        evidence, collateral = doc.get("max_evidence_age"), doc.get("max_collateral_age")
        return cls(
            max_evidence_age=None if evidence is None else Duration(evidence),
            max_collateral_age=None if collateral is None else Duration(collateral),
        )


# --- Reference values -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReferenceEntry:
    """One accepted image: every (claim path, lowercase hex) pair must match."""

    values: tuple[tuple[str, str], ...]
    label: str | None = None
    provenance: Provenance | None = None
    """Where the values came from (:mod:`broker.policy.provenance`); never matched on."""

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {} if self.label is None else {"label": self.label}
        doc.update(self.values)
        if self.provenance is not None:
            doc["provenance"] = self.provenance.to_json()
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ReferenceEntry:
        values = tuple((k, str(v).lower()) for k, v in doc.items() if k not in _ENTRY_METADATA)
        provenance = doc.get("provenance")
        return cls(
            values=values,
            label=doc.get("label"),
            provenance=None if provenance is None else Provenance.from_json(provenance),
        )


#: Keys of a reference entry that describe it rather than name a claim.
_ENTRY_METADATA = frozenset({"label", "provenance"})


@dataclass(frozen=True, slots=True)
class ReferenceSet:
    name: str
    tee: str
    entries: tuple[ReferenceEntry, ...]
    description: str | None = None
    source: str | None = field(default=None, compare=False)
    """The file the set was read from (for messages; not part of the policy's meaning)."""
    signed_by: str | None = None
    """The signer whose detached signature over the set's file verified, if any."""

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"tee": self.tee}
        if self.description is not None:
            doc["description"] = self.description
        doc["values"] = [entry.to_json() for entry in self.entries]
        return doc

    @classmethod
    def from_json(
        cls,
        name: str,
        doc: Mapping[str, Any],
        source: str | None,
        signed_by: str | None = None,
    ) -> ReferenceSet:
        return cls(
            name=name,
            tee=doc["tee"],
            entries=tuple(ReferenceEntry.from_json(e) for e in doc["values"]),
            description=doc.get("description"),
            source=source,
            signed_by=signed_by,
        )


def reference_sets_from_json(
    doc: Mapping[str, Any], source: str | None, signed_by: str | None = None
) -> dict[str, ReferenceSet]:
    return {
        name: ReferenceSet.from_json(name, body, source, signed_by) for name, body in doc.items()
    }


@dataclass(frozen=True, slots=True)
class SharedReferences:
    """What a policy's reference files (or its canonical ``signed_references``) provide."""

    sets: Mapping[str, ReferenceSet]
    signed: tuple[SignedReference, ...] = ()
    rules: ReferenceSetRules | None = None


# --- Release limits (stateful rules) -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RatePerInstance:
    """At most ``releases`` releases to one instance in any period of length ``per``."""

    releases: int
    per: Duration

    def to_json(self) -> dict[str, Any]:
        return {"releases": self.releases, "per": self.per.text}


@dataclass(frozen=True, slots=True)
class Limits:
    """Rules over the key's release history rather than one piece of evidence
    (docs/policies.md, "Release limits"). The broker enforces them with counters in
    PostgreSQL, in the statement that appends the release's audit record."""

    max_releases: int | None = None
    once_per_instance: bool = False
    pin_to_first_instance: bool = False
    rate_per_instance: RatePerInstance | None = None
    reason: str | None = None
    acknowledged_warnings: tuple[tuple[str, str], ...] = ()

    @property
    def per_instance(self) -> bool:
        """Whether a rule needs the identity of the instance a release goes to."""
        return (
            self.once_per_instance
            or self.pin_to_first_instance
            or self.rate_per_instance is not None
        )

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        if self.max_releases is not None:
            doc["max_releases"] = self.max_releases
        if self.once_per_instance:
            doc["once_per_instance"] = True
        if self.pin_to_first_instance:
            doc["pin_to_first_instance"] = True
        if self.rate_per_instance is not None:
            doc["rate_per_instance"] = self.rate_per_instance.to_json()
        if self.acknowledged_warnings:
            doc["acknowledged_warnings"] = dict(self.acknowledged_warnings)
        return _with_reason(doc, self.reason)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Limits | None:
        """The limits of a schema-valid ``limits`` object; None when it states no rule (so
        ``limits: {}`` and no ``limits`` mean the same policy)."""
        rate = doc.get("rate_per_instance")
        limits = cls(
            max_releases=doc.get("max_releases"),
            once_per_instance=bool(doc.get("once_per_instance", False)),
            pin_to_first_instance=bool(doc.get("pin_to_first_instance", False)),
            rate_per_instance=(
                None if rate is None else RatePerInstance(rate["releases"], Duration(rate["per"]))
            ),
            reason=doc.get("reason"),
            acknowledged_warnings=tuple(doc.get("acknowledged_warnings", {}).items()),
        )
        return limits if limits.max_releases is not None or limits.per_instance else None


# --- Sections and the policy ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Section:
    """The rules for one TEE (or ``any``). Clauses are evaluated in field order."""

    tee: str
    signer: SignerRule | None = None
    insecure_allow_debug: bool = False
    reference_values: tuple[str, ...] = ()
    minimum_tcb: MinimumTcb | None = None
    freshness: Freshness | None = None
    require: tuple[Condition, ...] = ()
    acknowledged_warnings: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        if self.signer is not None:
            doc["signer"] = self.signer.to_json()
        if self.insecure_allow_debug:
            doc["insecure_allow_debug"] = True
        if self.reference_values:
            doc["reference_values"] = list(self.reference_values)
        if self.minimum_tcb is not None:
            doc["minimum_tcb"] = self.minimum_tcb.to_json()
        if self.freshness is not None:
            doc["freshness"] = self.freshness.to_json()
        if self.require:
            doc["require"] = [c.to_json() for c in self.require]
        if self.acknowledged_warnings:
            doc["acknowledged_warnings"] = dict(self.acknowledged_warnings)
        return doc

    @classmethod
    def from_json(cls, tee: str, doc: Mapping[str, Any]) -> Section:
        signer, tcb, fresh = doc.get("signer"), doc.get("minimum_tcb"), doc.get("freshness")
        return cls(
            tee=tee,
            signer=None if signer is None else SignerRule.from_json(signer),
            insecure_allow_debug=bool(doc.get("insecure_allow_debug", False)),
            reference_values=tuple(doc.get("reference_values", ())),
            minimum_tcb=None if tcb is None else MinimumTcb.from_json(tcb),
            freshness=None if fresh is None else Freshness.from_json(fresh),
            require=tuple(condition_from_json(c) for c in doc.get("require", ())),
            acknowledged_warnings=tuple(doc.get("acknowledged_warnings", {}).items()),
        )


@dataclass(frozen=True, slots=True)
class KmsUse:
    """How the key may be used through the KMS-compatible endpoint (docs/kms.md)."""

    access_keys: tuple[str, ...] | None = None
    """Names of the access keys whose signed requests may use the key; None: any live one."""
    insecure_allow_unattested: bool = False
    """Whether Decrypt and GenerateDataKey answer plaintext to a caller without a Recipient,
    whom no evidence vouches for (deny by default)."""

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        if self.access_keys is not None:
            doc["access_keys"] = list(self.access_keys)
        if self.insecure_allow_unattested:
            doc["insecure_allow_unattested"] = True
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> KmsUse:
        return cls(
            access_keys=_tuple_or_none(doc.get("access_keys")),
            insecure_allow_unattested=bool(doc.get("insecure_allow_unattested", False)),
        )


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    version: int
    sections: tuple[Section, ...]
    reference_sets: tuple[ReferenceSet, ...] = ()
    """The sets the sections use, inline or from shared files, sorted by name."""
    description: str | None = None
    reference_rules: ReferenceSetRules | None = None
    """``reference_sets``: who may sign reference files, and whether sets must be signed."""
    signed_references: tuple[SignedReference, ...] = ()
    """The signed files the used sets came from, carried verbatim in the canonical form."""
    kms: KmsUse | None = None
    """Use through the KMS-compatible endpoint; None: the key is not served there."""
    limits: Limits | None = None
    """Rules over the key's release history (``max_releases``, per-instance rules)."""
    source: str | None = field(default=None, compare=False)
    _digest: str = field(default="", init=False, repr=False, compare=False)
    program: Any = field(default=None, init=False, repr=False, compare=False)
    """The compiled form, attached by :func:`broker.policy.evaluate.compile_policy`."""

    def __post_init__(self) -> None:
        digest = hashlib.sha256(canonical_json(self.to_json())).hexdigest()
        object.__setattr__(self, "_digest", digest)

    def digest(self) -> str:
        """Lowercase hex SHA-256 of the canonical JSON form: the policy's identity in audits."""
        return self._digest

    def section(self, tee: str) -> Section | None:
        for section in self.sections:
            if section.tee == tee:
                return section
        return None

    def reference_set(self, name: str) -> ReferenceSet:
        for ref in self.reference_sets:
            if ref.name == name:
                return ref
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"format": POLICY_FORMAT, "name": self.name, "version": self.version}
        if self.description is not None:
            doc["description"] = self.description
        inline = {r.name: r.to_json() for r in self.reference_sets if r.signed_by is None}
        if inline:
            doc["reference_values"] = inline
        if self.reference_rules is not None:
            doc["reference_sets"] = self.reference_rules.to_json()
        if self.signed_references:
            doc["signed_references"] = [s.to_json() for s in self.signed_references]
        if self.kms is not None:
            doc["kms"] = self.kms.to_json()
        doc["admit"] = {section.tee: section.to_json() for section in self.sections}
        if self.limits is not None:
            doc["limits"] = self.limits.to_json()
        return doc

    @classmethod
    def from_document(
        cls,
        doc: Mapping[str, Any],
        *,
        shared: SharedReferences | None = None,
        source: str | None = None,
    ) -> Policy:
        """Build from a schema-valid document; ``shared`` holds the sets of its reference
        files (verified, when signed) and the document's signing rules."""
        shared = shared or SharedReferences({})
        available = dict(shared.sets)
        problems: list[dict[str, Any]] = []
        for name, body in doc.get("reference_values", {}).items():
            if name in available:
                problems.append(
                    _problem(
                        ("reference_values", name),
                        f"reference set '{name}' is also defined in {available[name].source}",
                    )
                )
            available[name] = ReferenceSet.from_json(name, body, source)
        order = (*TEE_SECTIONS, ANY_SECTION)
        admit = doc.get("admit", {})
        sections = tuple(Section.from_json(tee, admit[tee]) for tee in order if tee in admit)
        used: dict[str, ReferenceSet] = {}
        for section in sections:
            for index, name in enumerate(section.reference_values):
                where = ("admit", section.tee, "reference_values", index)
                ref = available.get(name)
                if ref is None:
                    known = ", ".join(sorted(available)) or "none"
                    problems.append(
                        _problem(where, f"no reference set named '{name}' (known: {known})")
                    )
                elif ref.tee != section.tee:
                    problems.append(
                        _problem(
                            where,
                            f"reference set '{name}' holds {ref.tee} values; "
                            f"the {section.tee} section cannot use it",
                        )
                    )
                elif (
                    shared.rules is not None
                    and shared.rules.require_signed
                    and ref.signed_by is None
                ):
                    problems.append(
                        _problem(
                            where,
                            f"reference set '{name}' ({ref.source or 'inline'}) is not signed; "
                            "reference_sets.require_signed accepts only sets from a reference "
                            f"file signed by one of: {shared.rules.names}",
                        )
                    )
                else:
                    used[name] = ref
        if problems:
            raise PolicyError("; ".join(p["message"] for p in problems), problems)
        return cls(
            name=doc["name"],
            version=doc["version"],
            description=doc.get("description"),
            kms=None if "kms" not in doc else KmsUse.from_json(doc["kms"]),
            sections=sections,
            reference_sets=tuple(used[name] for name in sorted(used)),
            reference_rules=shared.rules,
            signed_references=tuple(
                sorted(
                    (s for s in shared.signed if any(r.source == s.file for r in used.values())),
                    key=lambda s: s.file,
                )
            ),
            limits=Limits.from_json(doc.get("limits", {})),
            source=source,
        )


def _problem(path: tuple[str | int, ...], message: str) -> dict[str, Any]:
    return {"path": jsonpath(path), "parts": path, "message": message}


def _tuple_or_none(value: Sequence[str] | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(value)
