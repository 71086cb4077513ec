"""Warnings about valid but risky policies, each with a stable code.

| code                    | warns when a section ...                                             |
|-------------------------|----------------------------------------------------------------------|
| ``no-measurement``      | pins no measurement (no reference values, no measurement condition)  |
| ``debug-allowed``       | sets ``insecure_allow_debug: true`` (cannot be acknowledged)         |
| ``infrastructure-signer`` | does not require ``signer.origin: silicon-vendor``                 |
| ``no-minimum-tcb``      | sets no minimum TCB (SNP components; Intel: accepted ``tcb_status``) |
| ``any-tee``             | is the ``any`` section, which admits every TEE without its own       |
| ``unknown-claim``       | reads a claim path that the TEE's verifier does not produce          |
| ``test-root-accepted``  | names an ``insecure-test-...`` root in ``signer.roots`` (cannot be   |
|                         | acknowledged: such evidence proves nothing about real hardware)      |

A measurement condition pins only when every way of passing ``require`` needs it: at the top
level, inside ``all_of``, or inside ``any_of`` when every branch pins; never under ``not``.

A section may acknowledge a warning on purpose with ``acknowledged_warnings: {code: reason}``;
the warning is still reported, marked acknowledged, and no longer fails ``policy check``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import EllipsisType

from broker.evidence.claims import SignerOrigin
from broker.evidence.trust import INSECURE_ROOT_PREFIX
from broker.policy.model import (
    ANY_SECTION,
    MEASUREMENT_CLAIMS,
    SIGNER_ATTRIBUTES,
    SNP_TCB_COMPONENTS,
    AllOf,
    AnyOf,
    Compare,
    Condition,
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
}
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
        for code, location, message in _section_warnings(section):
            reason = None if code in UNACKNOWLEDGEABLE else acknowledged.get(code)
            warnings.append(LintWarning(code, location, message, reason))
    return tuple(warnings)


def _section_warnings(section: Section) -> Iterator[tuple[str, Location, str]]:
    tee = section.tee
    base: Location = ("admit", tee)
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
        wanted = ", ".join(sorted(measurement_claims))
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
        if not known_claim(tee, compare.claim):
            yield (
                "unknown-claim",
                (*location, "claim"),
                f"no {tee} verifier produces the claim '{compare.claim}'; "
                "the condition will find it absent and fail",
            )


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
    if section.tee == "nitro":  # AWS publishes no security versions for Nitro
        return False
    if section.tee in ("tdx", "sgx"):
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


# --- the claims each verifier produces (CLAIMS.md) ------------------------------------------

#: A claim tree: a name maps to None (a leaf), to a set of leaf names, to an int n (a list
#: of n entries, indexed 0..n-1), or to ... (any sub-path: open-ended flag sets, lists).
Catalogue = Mapping[str, frozenset[str] | int | EllipsisType | None]

_TCB = frozenset(SNP_TCB_COMPONENTS)
_VERSION = frozenset({"major", "minor", "build"})
_COMMON: Catalogue = {
    "tee": None,
    "debug": None,
    "signer": SIGNER_ATTRIBUTES,
}
_INTEL: Catalogue = {
    "quote_version": None,
    "report_data": None,
    "fmspc": None,
    "pce_svn": None,
    "cpu_svn": None,
    "tcb_status": None,
    "advisory_ids": ...,
    "tcb_date": None,
    "tcb_evaluation_data_number": None,
}
CLAIM_CATALOGUE: Mapping[str, Catalogue] = {
    "snp": {
        **_COMMON,
        **dict.fromkeys(
            [
                "version",
                "guest_svn",
                "family_id",
                "image_id",
                "vmpl",
                "signature_algo",
                "report_data",
                "measurement",
                "host_data",
                "id_key_digest",
                "author_key_digest",
                "report_id",
                "report_id_ma",
                "chip_id",
                "launch_mit_vector",
                "current_mit_vector",
            ]
        ),
        "policy": frozenset(
            [
                "abi_minor",
                "abi_major",
                "smt",
                "migrate_ma",
                "debug",
                "single_socket",
                "cxl_allow",
                "mem_aes_256_xts",
                "rapl_dis",
                "ciphertext_hiding",
                "page_swap_disable",
            ]
        ),
        **dict.fromkeys(("current_tcb", "reported_tcb", "committed_tcb", "launch_tcb"), _TCB),
        "platform_info": frozenset(
            [
                "smt_enabled",
                "tsme_enabled",
                "ecc_enabled",
                "rapl_disabled",
                "ciphertext_hiding_enabled",
                "alias_check_complete",
                "tio_enabled",
            ]
        ),
        "signer_info": frozenset({"signing_key", "mask_chip_key", "author_key_en"}),
        "cpuid": frozenset({"family", "model", "stepping"}),
        "current_version": _VERSION,
        "committed_version": _VERSION,
    },
    "tdx": {
        **_COMMON,
        **_INTEL,
        **dict.fromkeys(
            [
                "tee_tcb_svn",
                "mr_seam",
                "mr_signer_seam",
                "seam_attributes",
                "xfam",
                "mr_td",
                "mr_config_id",
                "mr_owner",
                "mr_owner_config",
                "mr_service_td",
            ]
        ),
        "td_attributes": ...,
        "rtmr": 4,
    },
    "sgx": {
        **_COMMON,
        **_INTEL,
        **dict.fromkeys(
            ["mr_enclave", "mr_signer", "isv_prod_id", "isv_svn", "config_svn", "config_id"]
        ),
        "attributes": ...,
    },
    "nitro": {
        **_COMMON,
        **dict.fromkeys(["module_id", "timestamp", "digest", "public_key", "user_data", "nonce"]),
        "pcrs": 32,
    },
}


def known_claim(tee: str, path: str) -> bool:
    """Whether a verifier of ``tee`` (of any TEE, for ``any``) produces the claim ``path``."""
    if tee == ANY_SECTION:
        return any(_in_catalogue(catalogue, path) for catalogue in CLAIM_CATALOGUE.values())
    return _in_catalogue(CLAIM_CATALOGUE[tee], path)


def _in_catalogue(catalogue: Catalogue, path: str) -> bool:
    head, _, rest = path.partition(".")
    if head not in catalogue:
        return False
    shape = catalogue[head]
    if shape is ...:
        return True
    if shape is None:
        return not rest
    if isinstance(shape, int):
        return rest.isdigit() and int(rest) < shape
    return rest in shape
