"""Named reference-value sets: accepted measurements that several policies share.

A set is defined inline under a policy's ``reference_values`` or in a reference file
(``format: keybroker-references/1``) that policies list under ``references``, by a path
relative to the policy file. A set name must be unique across a policy and the files it
lists. The policy's canonical form (and so its digest) inlines the sets it uses, so a change
to a shared file changes the digest of every policy that uses the changed set.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from broker.errors import PolicyError
from broker.policy.model import REFERENCES_FORMAT, ReferenceSet, reference_sets_from_json
from broker.policy.schema import validate
from broker.policy.source import Problem, SourceMap, policy_error, read_source


def load_reference_file(path: Path) -> dict[str, ReferenceSet]:
    """The sets of the reference file at ``path``; :class:`PolicyError` if it is not one."""
    doc, where = read_source(path)
    validate(doc, where)
    if doc["format"] != REFERENCES_FORMAT:
        raise policy_error([where.problem(("format",), f"must be {REFERENCES_FORMAT}")])
    return reference_sets_from_json(doc["reference_values"], str(path))


def resolve_references(
    references: Sequence[str], base_dir: Path | None, where: SourceMap
) -> dict[str, ReferenceSet]:
    """Every set of the files a policy lists, relative to ``base_dir`` (its directory).

    Problems inside a reference file are reported at their own file and line, plus one
    problem at the policy's ``references`` entry that pulled the file in.
    """
    shared: dict[str, ReferenceSet] = {}
    problems: list[Problem] = []
    for index, name in enumerate(references):
        entry = ("references", index)
        if base_dir is None:
            problems.append(where.problem(entry, "no base directory to resolve references"))
            continue
        try:
            sets = load_reference_file(base_dir / name)
        except PolicyError as exc:
            problems.append(where.problem(entry, f"{name}: {exc.problems[0]['message']}"))
            problems.extend(Problem(**problem) for problem in exc.problems)
            continue
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
    return shared
