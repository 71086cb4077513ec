"""Warnings about valid but risky policies, each with a stable code.

| code                    | warns when a section ...                                             |
|-------------------------|----------------------------------------------------------------------|
| ``no-measurement``      | pins no measurement (no reference values, no measurement condition)  |
| ``debug-allowed``       | sets ``insecure_allow_debug: true`` (cannot be acknowledged)         |
| ``infrastructure-signer`` | does not require ``signer.origin: silicon-vendor``                 |
| ``no-minimum-tcb``      | sets no minimum TCB (SNP components; Intel: accepted ``tcb_status``) |
| ``any-tee``             | is the ``any`` section, which admits every TEE without its own       |
| ``unknown-claim``       | reads a claim path that the TEE's verifier does not produce, or      |
|                         | compares an object or list (docs/claims.md; only ``exists`` reads it)|
| ``test-root-accepted``  | names an ``insecure-test-...`` root in ``signer.roots`` (cannot be   |
|                         | acknowledged: such evidence proves nothing about real hardware)      |
| ``instance-unidentified`` | admits evidence that may name no instance (SNP: masked chip id or  |
|                         | a VLEK; ``any``) while ``limits`` has a per-instance rule, which     |
|                         | denies such evidence                                                 |

and about the policy's ``limits`` (acknowledged in ``limits.acknowledged_warnings``):

| ``limits-redundant``    | states a rule that another makes moot (``max_releases: 1`` beside a  |
|                         | per-instance rule; ``rate_per_instance`` beside                      |
|                         | ``once_per_instance``)                                               |

A measurement condition pins only when every way of passing ``require`` needs it: at the top
level, inside ``all_of``, or inside ``any_of`` when every branch pins; never under ``not``.

A section may acknowledge a warning on purpose with ``acknowledged_warnings: {code: reason}``;
the warning is still reported, marked acknowledged, and no longer fails ``policy check``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from broker.evidence.claims import (
    INDEX,
    SCALAR_KINDS,
    ClaimDefinition,
    ClaimKind,
    SignerOrigin,
    Tee,
)
from broker.evidence.trust import INSECURE_ROOT_PREFIX
from broker.policy.catalogue import CATALOGUE, Catalogue
from broker.policy.model import (
    ANY_SECTION,
    MEASUREMENT_CLAIMS,
    AllOf,
    AnyOf,
    Compare,
    Condition,
    Limits,
    Not,
    Operator,
    Policy,
    Section,
    jsonpath,
)

CODES: Mapping[str, str] = {
    "no-measurement": "no measurement constraint",
    "debug-allowed": "debug guests allowed",
    "infrastructure-signer": "infrastructure-provider signer accepted",
    "no-minimum-tcb": "no minimum TCB",
    "any-tee": "accepts any TEE type",
    "unknown-claim": "claim path unknown for this TEE",
    "test-root-accepted": "test root accepted",
    "instance-unidentified": "per-instance limits deny evidence without an instance identity",
    "limits-redundant": "a release limit made moot by another",
}
#: Warnings about the policy's ``limits``, acknowledged there rather than in a section.
LIMITS_CODES = frozenset({"limits-redundant"})
#: Warnings that stay warnings whatever the policy says.
UNACKNOWLEDGEABLE = frozenset({"debug-allowed", "test-root-accepted"})

Location = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class LintWarning:
    code: str
    location: Location
    """Where in the policy, as path parts (``("admit", "snp", "insecure_allow_debug")``)."""
    message: str
    acknowledged: str | None = None
    """The section's stated reason when it acknowledges this warning."""

    @property
    def rule(self) -> str:
        return jsonpath(self.location)

    def to_json(self) -> dict[str, object]:
        return {
            "code": self.code,
            "rule": self.rule,
            "message": self.message,
            "acknowledged": self.acknowledged,
        }


def lint(policy: Policy) -> tuple[LintWarning, ...]:
    """Every warning of every section, in section order."""
    warnings: list[LintWarning] = []
    for section in policy.sections:
        acknowledged = dict(section.acknowledged_warnings)
        for code, location, message in _section_warnings(section, policy.limits):
            reason = None if code in UNACKNOWLEDGEABLE else acknowledged.get(code)
            warnings.append(LintWarning(code, location, message, reason))
    if policy.limits is not None:
        acknowledged = dict(policy.limits.acknowledged_warnings)
        for code, location, message in _limits_warnings(policy.limits):
            warnings.append(LintWarning(code, location, message, acknowledged.get(code)))
    return tuple(warnings)


#: Sections whose evidence may name no instance (``broker/policy/limits.py``): SNP reports
#: (native or under a vTPM) with MASK_CHIP_ID set or signed by a VLEK carry a zero chip id;
#: a plain vTPM names none; ``any`` admits those too.
_UNIDENTIFIABLE = frozenset({"snp", "snp-vtpm", "tpm", ANY_SECTION})


def _limits_warnings(limits: Limits) -> Iterator[tuple[str, Location, str]]:
    if limits.max_releases == 1 and limits.per_instance:
        yield (
            "limits-redundant",
            ("limits", "max_releases"),
            "max_releases: 1 releases the key once in all, so no per-instance rule can "
            "refuse anything it allows",
        )
    if limits.once_per_instance and limits.rate_per_instance is not None:
        yield (
            "limits-redundant",
            ("limits", "rate_per_instance"),
            "once_per_instance allows one release per instance ever, so the rate never applies",
        )


def _section_warnings(
    section: Section, limits: Limits | None
) -> Iterator[tuple[str, Location, str]]:
    tee = section.tee
    base: Location = ("admit", tee)
    if limits is not None and limits.per_instance and tee in _UNIDENTIFIABLE:
        yield (
            "instance-unidentified",
            base,
            "the per-instance release limits deny evidence that names no instance: SNP "
            "reports with MASK_CHIP_ID set or signed by a VLEK carry a zero chip_id, and a "
            "plain vTPM's evidence names no hardware at all",
        )
    compares = list(_compares(section.require, (*base, "require")))
    if tee == ANY_SECTION:
        yield (
            "any-tee",
            base,
            "the 'any' section admits every TEE that has no section of its own, "
            "including TEEs added to keybroker later",
        )
    measurement_claims = (
        frozenset().union(*MEASUREMENT_CLAIMS.values())
        if tee == ANY_SECTION
        else MEASUREMENT_CLAIMS[tee]
    )
    if not section.reference_values and not any(
        _pins(condition, measurement_claims) for condition in section.require
    ):
        wanted = ", ".join(_collapsed(measurement_claims))
        yield (
            "no-measurement",
            base,
            f"no reference values and no condition on {wanted}: any code the TEE runs is admitted",
        )
    if section.insecure_allow_debug:
        yield (
            "debug-allowed",
            (*base, "insecure_allow_debug"),
            "debug guests are admitted: their host can read their memory, so a released key "
            "is as exposed as the host",
        )
    signer = section.signer
    if signer is None or signer.origin is not SignerOrigin.SILICON_VENDOR:
        where = base if signer is None else (*base, "signer")
        yield (
            "infrastructure-signer",
            where,
            "evidence signed by an infrastructure provider (a cloud operator, e.g. AWS Nitro) "
            "is accepted: that operator stays fully trusted; require signer.origin: "
            "silicon-vendor where the TEE allows it",
        )
    test_roots = [
        root
        for root in (signer.roots if signer is not None else ()) or ()
        if root.startswith(INSECURE_ROOT_PREFIX)
    ]
    if test_roots:
        yield (
            "test-root-accepted",
            (*base, "signer", "roots"),
            f"test roots {', '.join(test_roots)} are accepted: their evidence is synthetic "
            "and proves nothing about real hardware; never bind a production key to this",
        )
    if _lacks_minimum_tcb(section):
        yield (
            "no-minimum-tcb",
            base if section.minimum_tcb is None else (*base, "minimum_tcb"),
            "no minimum TCB: platforms with known, fixed vulnerabilities are admitted",
        )
    for compare, location in compares:
        problem = _claim_problem(tee, compare)
        if problem is not None:
            yield "unknown-claim", (*location, "claim"), problem


def _collapsed(names: frozenset[str]) -> list[str]:
    """Sorted names; more than two indexes of one list or map are written once, as
    ``tpm.pcrs.sha256.N`` (the 24 PCRs a vTPM section may pin)."""
    indexed: dict[str, list[str]] = {}
    for name in names:
        parent, _, last = name.rpartition(".")
        if parent and last.isdigit():
            indexed.setdefault(parent, []).append(name)
    out = set(names)
    for parent, entries in indexed.items():
        if len(entries) > 2:
            out.difference_update(entries)
            out.add(f"{parent}.N")
    return sorted(out)


_PINNING = frozenset({Operator.EQUALS, Operator.IN, Operator.HEX_EQUALS, Operator.HEX_IN})


def _pins(condition: Condition, claims: frozenset[str]) -> bool:
    """Whether every way of passing ``condition`` requires a measurement in ``claims`` to
    equal (or be one of) accepted values: a comparison, an ``all_of`` with a pinning member,
    or an ``any_of`` whose every branch pins. Nothing under ``not`` pins: a negated
    comparison excludes values instead of naming the accepted ones."""
    if isinstance(condition, Compare):
        return condition.claim in claims and condition.op in _PINNING
    if isinstance(condition, AllOf):
        return any(_pins(child, claims) for child in condition.conditions)
    if isinstance(condition, AnyOf):
        return bool(condition.conditions) and all(
            _pins(child, claims) for child in condition.conditions
        )
    return False


def _lacks_minimum_tcb(section: Section) -> bool:
    tcb = section.minimum_tcb
    if section.tee in ("nitro", "tpm"):  # AWS, Google and Microsoft publish no vTPM versions
        return False
    if section.tee in ("tdx", "sgx", "tdx-vtpm"):
        return tcb is None or tcb.tcb_status is None
    return tcb is None


def _compares(
    conditions: tuple[Condition, ...], location: Location
) -> Iterator[tuple[Compare, Location]]:
    """Each comparison, at any depth, with where it is."""
    for index, condition in enumerate(conditions):
        yield from _walk(condition, (*location, index))


def _walk(condition: Condition, location: Location) -> Iterator[tuple[Compare, Location]]:
    if isinstance(condition, Compare):
        yield condition, location
    elif isinstance(condition, Not):
        yield from _walk(condition.condition, (*location, "not"))
    else:
        word = "all_of" if isinstance(condition, AllOf) else "any_of"
        for index, child in enumerate(condition.conditions):
            yield from _walk(child, (*location, word, index))


# --- claim paths (docs/claims.md) ---------------------------------------------------------


def known_claim(tee: str, path: str) -> bool:
    """Whether a verifier of ``tee`` (of any TEE, for ``any``) produces at ``path`` a value
    that a comparison can read: a string, integer, boolean or hex claim."""
    return any(definition.kind in SCALAR_KINDS for _, definition in _found(tee, path))


def _found(tee: str, path: str) -> list[tuple[Catalogue, ClaimDefinition]]:
    """The definitions of ``path`` in the catalogue of ``tee`` (of every TEE, for ``any``)."""
    catalogues = CATALOGUE.values() if tee == ANY_SECTION else (CATALOGUE[Tee(tee)],)
    found = ((catalogue, catalogue.find(path)) for catalogue in catalogues)
    return [(catalogue, definition) for catalogue, definition in found if definition is not None]


def _claim_problem(tee: str, compare: Compare) -> str | None:
    """Why ``compare`` can never read its claim in evidence of ``tee``, or None when it can:
    the path names no claim, or a comparison names an object or list (only ``exists`` reads
    those), or ``exists`` names ``signer``, which conditions read only by its members."""
    path = compare.claim
    found = _found(tee, path)
    if not found:
        return (
            f"no {tee} verifier produces the claim '{path}'; "
            "the condition will find it absent and fail"
        )
    if compare.op is Operator.EXISTS:
        readable = any(not definition.read_by_member for _, definition in found)
        return (
            None
            if readable
            else (
                f"conditions read '{path}' only by its members (such as '{_member(*found[0])}'); "
                "the condition will find it absent"
            )
        )
    if any(definition.kind in SCALAR_KINDS for _, definition in found):
        return None
    kind = found[0][1].kind
    return (
        f"'{path}' is {'an' if kind is ClaimKind.OBJECT else 'a'} {kind}, which only exists "
        f"tests: the condition will fail; compare a member such as '{_member(*found[0])}'"
    )


def _member(catalogue: Catalogue, container: ClaimDefinition) -> str:
    """The path of the first claim below ``container`` that a comparison reads, an index as
    0 (``rtmr.0``, ``event_log.0.rtmr``)."""
    member = catalogue.members(container)[0]
    while member.kind not in SCALAR_KINDS:
        member = catalogue.members(member)[0]
    return ".".join("0" if part == INDEX else part for part in member.name.split("."))
