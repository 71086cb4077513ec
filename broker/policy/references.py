"""Named reference-value sets: accepted measurements that several policies share.

A set is defined inline under a policy's ``reference_values`` or in a reference file
(``format: keybroker-references/1``) that policies list under ``references``, by a path
relative to the policy file. A set name must be unique across a policy and the files it
lists. The policy's canonical form (and so its digest) inlines the sets it uses, so a change
to a shared file changes the digest of every policy that uses the changed set.

A policy with ``reference_sets`` names the keys that may sign its reference files
(:mod:`broker.policy.signatures`). A listed file with a detached signature beside it
(``FILE.sig``) is then verified before any of its sets is read, and a bad signature is
refused whether or not signatures are required; with ``require_signed: true`` an unsigned
file is refused too. Signed files travel verbatim in the canonical form
(``signed_references``), where they are verified again on every load.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from broker.errors import PolicyError
from broker.policy.model import (
    REFERENCES_FORMAT,
    ReferenceSet,
    SharedReferences,
    reference_sets_from_json,
)
from broker.policy.schema import validate
from broker.policy.signatures import (
    SIGNATURE_SUFFIX,
    BadSignature,
    ReferenceSetRules,
    SignedReference,
    rules_from_json,
)
from broker.policy.source import (
    Problem,
    SourceMap,
    is_json_name,
    parse_document,
    policy_error,
    read_text,
)


def _sets_of(
    raw: Any, where: SourceMap, source: str, signed_by: str | None
) -> dict[str, ReferenceSet]:
    doc = validate(raw, where)
    if doc["format"] != REFERENCES_FORMAT:
        raise policy_error([where.problem(("format",), f"must be {REFERENCES_FORMAT}")])
    return reference_sets_from_json(doc["reference_values"], source, signed_by)


def shared_references(
    doc: Mapping[str, Any], base_dir: Path | None, where: SourceMap
) -> SharedReferences:
    """The signing rules of a schema-valid policy document, and every set its reference
    files (``references``, relative to ``base_dir``) and carried signed files
    (``signed_references``) provide, each signature verified first.

    Problems inside a reference file are reported at their own file and line, plus one
    problem at the policy's entry that pulled the file in.
    """
    problems: list[Problem] = []
    rules = _rules(doc, where, problems)
    if problems:  # a file's signature is only worth checking against every signer named
        raise policy_error(problems)
    files: list[tuple[tuple[str | int, ...], str, SourceOfSets]] = []
    for index, name in enumerate(doc.get("references", [])):
        entry: tuple[str | int, ...] = ("references", index)
        if base_dir is None:
            problems.append(where.problem(entry, "no base directory to resolve references"))
            continue
        files.append((entry, name, _FileOnDisk(base_dir / name, rules)))
    carried = doc.get("signed_references", [])
    if carried and rules is None:
        problems.append(
            where.problem(("signed_references",), "signed references need reference_sets")
        )
    elif rules is not None:
        for index, signed in enumerate(carried):
            files.append((("signed_references", index), signed["file"], _Carried(signed, rules)))
    shared: dict[str, ReferenceSet] = {}
    verified: list[SignedReference] = []
    for entry, name, origin in files:
        try:
            sets, signed = origin.read(name)
        except PolicyError as exc:
            problems.append(where.problem(entry, f"{name}: {exc.problems[0]['message']}"))
            problems.extend(Problem(**problem) for problem in exc.problems)
            continue
        if signed is not None:
            verified.append(signed)
        for set_name, ref in sets.items():
            if set_name in shared:
                message = (
                    f"reference set '{set_name}' is defined in both "
                    f"{shared[set_name].source} and {ref.source}"
                )
                problems.append(where.problem(entry, message))
            shared[set_name] = ref
    if problems:
        raise policy_error(problems)
    return SharedReferences(shared, tuple(verified), rules)


def _rules(
    doc: Mapping[str, Any], where: SourceMap, problems: list[Problem]
) -> ReferenceSetRules | None:
    body = doc.get("reference_sets")
    if body is None:
        return None
    rules, bad = rules_from_json(body)
    for index, message in bad:
        problems.append(where.problem(("reference_sets", "signers", index), message))
    return rules


class SourceOfSets:
    def read(self, name: str) -> tuple[dict[str, ReferenceSet], SignedReference | None]:
        raise NotImplementedError


class _FileOnDisk(SourceOfSets):
    """A listed reference file, with its detached signature when one is beside it."""

    def __init__(self, path: Path, rules: ReferenceSetRules | None) -> None:
        self.path, self.rules = path, rules

    def read(self, name: str) -> tuple[dict[str, ReferenceSet], SignedReference | None]:
        text = read_text(self.path)
        signature_path = self.path.with_name(self.path.name + SIGNATURE_SUFFIX)
        if self.rules is None:  # the policy trusts no signer: a signature would prove nothing
            return self._sets(text, None), None
        if not signature_path.is_file():
            if self.rules.require_signed:
                raise _file_problem(
                    self.path,
                    f"not signed: no {signature_path.name} beside it, and "
                    "reference_sets.require_signed accepts only signed reference files",
                )
            return self._sets(text, None), None
        signature = read_text(signature_path)
        signed = _verified(name, text, signature, self.rules, self.path)
        return self._sets(text, signed.signer, name), signed

    def _sets(
        self, text: str, signer: str | None, name: str | None = None
    ) -> dict[str, ReferenceSet]:
        source = str(self.path)
        doc, where = parse_document(text, source, is_json=is_json_name(source))
        return _sets_of(doc, where, source if name is None else name, signer)


class _Carried(SourceOfSets):
    """A signed file carried in a canonical policy (``signed_references``)."""

    def __init__(self, signed: Mapping[str, str], rules: ReferenceSetRules) -> None:
        self.signed, self.rules = signed, rules

    def read(self, name: str) -> tuple[dict[str, ReferenceSet], SignedReference | None]:
        text, signature = self.signed["text"], self.signed["signature"]
        verified = _verified(name, text, signature, self.rules, Path(name))
        doc, where = parse_document(text, name, is_json=is_json_name(name))
        return _sets_of(doc, where, name, verified.signer), verified


def _verified(
    name: str, text: str, signature: str, rules: ReferenceSetRules, path: Path
) -> SignedReference:
    try:
        signer = rules.signer_of(text.encode("utf-8"), signature)
    except BadSignature as exc:
        raise _file_problem(path, f"signature refused: {exc}") from None
    return SignedReference(name, text, signature.strip(), signer.name)


def _file_problem(path: Path, message: str) -> PolicyError:
    return policy_error([Problem(str(path), None, None, "$", message)])
