"""One parser naming (docs/architecture.md §9): a format is read from its bytes by a module
function ``parse_<what>(data)`` (``parse_report``, ``parse_quote``, ``parse_signed_document``),
never by a ``from_bytes`` classmethod beside it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def from_bytes_methods(source: str) -> list[str]:
    """``<class>.from_bytes`` for each class in ``source`` that defines one."""
    return [
        f"{node.name}.{item.name}"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ClassDef)
        for item in node.body
        if isinstance(item, ast.FunctionDef) and item.name == "from_bytes"
    ]


def test_formats_are_read_by_parse_functions() -> None:
    found = [
        f"{path.relative_to(ROOT)}: {method}"
        for pattern in ("broker/**/*.py", "hsm/**/*.py")
        for path in sorted(ROOT.glob(pattern))
        for method in from_bytes_methods(path.read_text(encoding="utf-8"))
    ]
    assert found == []


def test_the_scan_sees_a_from_bytes_classmethod() -> None:
    source = "class Quote:\n    @classmethod\n    def from_bytes(cls, data): ...\n"
    assert from_bytes_methods(source) == ["Quote.from_bytes"]
    assert from_bytes_methods("def parse_quote(data): ...\nx = int.from_bytes(b'', 'big')") == []
