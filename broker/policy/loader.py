"""Loading policies: file -> strict YAML/JSON -> schema -> references -> model -> compiled.

Every problem is reported with the file, line, column and JSONPath that is wrong, and all
problems found in one stage are reported together in one :class:`broker.errors.PolicyError`.
The returned :class:`Policy` is already compiled for fast evaluation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from broker.errors import PolicyError
from broker.policy.evaluate import compile_policy
from broker.policy.model import POLICY_FORMAT, REFERENCES_FORMAT, Policy, ReferenceSet
from broker.policy.model import reference_sets_from_json as _sets_from_json
from broker.policy.references import shared_references
from broker.policy.schema import validate
from broker.policy.source import Problem, SourceMap, parse_document, policy_error, read_source


@dataclass(frozen=True)
class Document:
    """A checked document: a policy, or a reference-value file, and where its parts are."""

    source: str
    policy: Policy | None
    """None for a reference file."""
    reference_sets: Mapping[str, ReferenceSet]
    where: SourceMap


def read_document(path: str | Path) -> Document:
    """Load a policy or a reference file, resolving a policy's references next to it."""
    path = Path(path)
    doc, where = read_source(path)
    return _build(doc, where, path.parent)


def load_policy(path: str | Path) -> Policy:
    """Load, validate and compile the policy at ``path``; raise :class:`PolicyError`."""
    return _policy_of(read_document(path))


def load_policy_text(
    text: str, *, source: str = "<policy>", base_dir: Path | None = None, is_json: bool = False
) -> Policy:
    """Load a policy from text; its ``references`` resolve against ``base_dir``."""
    doc, where = parse_document(text, source, is_json=is_json)
    return _policy_of(_build(doc, where, base_dir))


def _policy_of(document: Document) -> Policy:
    if document.policy is None:
        problem = document.where.problem(
            ("format",), f"is {REFERENCES_FORMAT}, not {POLICY_FORMAT}"
        )
        raise policy_error([problem])
    return document.policy


def _build(raw: object, where: SourceMap, base_dir: Path | None) -> Document:
    doc = validate(raw, where)
    if doc["format"] == REFERENCES_FORMAT:
        sets = _sets_from_json(doc["reference_values"], where.source)
        return Document(where.source, None, sets, where)
    shared = shared_references(doc, base_dir, where)
    try:
        policy = Policy.from_document(doc, shared=shared, source=where.source)
    except PolicyError as exc:
        raise policy_error(_positioned(exc, where)) from None
    compile_policy(policy)
    return Document(where.source, policy, {r.name: r for r in policy.reference_sets}, where)


def _positioned(exc: PolicyError, where: SourceMap) -> list[Problem]:
    return [where.problem(tuple(p["parts"]), p["message"]) for p in exc.problems]
