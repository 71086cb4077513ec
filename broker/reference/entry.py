"""A computed value as the reference entry (and file) a policy reads.

Every string is written double-quoted (a JSON string is a YAML flow scalar), so a hex value
made only of digits, a date or ``yes`` stays a string under the policy loader's YAML 1.2
rules, and the text reads back to exactly the entry that was computed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from broker.policy.model import REFERENCES_FORMAT
from broker.reference.computed import Computed


def entry_document(computed: Computed, label: str | None) -> dict[str, Any]:
    doc: dict[str, Any] = {} if label is None else {"label": label}
    doc.update(computed.values)
    doc["provenance"] = computed.provenance.to_json()
    return doc


def entry_yaml(computed: Computed, label: str | None, indent: int = 0) -> str:
    """The entry as one item of a set's ``values`` list."""
    lines = list(_mapping(entry_document(computed, label), indent + 2))
    first = lines[0].lstrip()
    return "\n".join([" " * indent + "- " + first, *lines[1:]]) + "\n"


def reference_file_yaml(computed: Computed, set_name: str, label: str | None) -> str:
    """A whole ``keybroker-references/1`` file holding one set with this one entry."""
    header = (
        f"format: {REFERENCES_FORMAT}\n"
        "reference_values:\n"
        f"  {set_name}:\n"
        f"    tee: {computed.tee}\n"
        "    values:\n"
    )
    return header + entry_yaml(computed, label, indent=6)


def _mapping(doc: Mapping[str, Any], indent: int) -> Iterator[str]:
    pad = " " * indent
    for key, value in doc.items():
        if isinstance(value, Mapping):
            yield f"{pad}{key}:"
            yield from _mapping(value, indent + 2)
        elif isinstance(value, list):
            yield f"{pad}{key}:"
            for item in value:
                inner = list(_mapping(item, indent + 4))
                yield f"{pad}  - {inner[0].lstrip()}"
                yield from inner[1:]
        else:
            yield f"{pad}{key}: {_scalar(value)}"


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, ensure_ascii=False)
