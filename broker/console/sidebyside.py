"""Two policy versions side by side, line against line (pure).

The stored documents are canonical JSON on one line; each is shown indented with sorted
members, so equal content is equal text and a change shows on the lines it touches. What a
change means (loosened, tightened) is the semantic diff's job; this is the text beside it.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Row:
    left_number: int | None
    left: str
    right_number: int | None
    right: str
    change: str
    """``equal``, ``replace``, ``delete`` (left only) or ``insert`` (right only)."""


def pretty(document: str) -> list[str]:
    return json.dumps(json.loads(document), indent=2, sort_keys=True).splitlines()


def rows(old: list[str], new: list[str]) -> list[Row]:
    out: list[Row] = []
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        span = max(i2 - i1, j2 - j1)
        for k in range(span):
            i, j = i1 + k, j1 + k
            left = old[i] if i < i2 else None
            right = new[j] if j < j2 else None
            out.append(
                Row(
                    i + 1 if left is not None else None,
                    left or "",
                    j + 1 if right is not None else None,
                    right or "",
                    tag
                    if left is not None and right is not None
                    else ("delete" if left is not None else "insert"),
                )
            )
    return out
