"""What the list and show commands print: a readable table (or, for one object, aligned
``field: value`` lines) by default, and exactly one JSON document with ``--json``, the same
document the admin API answers (docs/cli.md, "Output")."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from broker.cli.common import print_json

#: A column: its header and how to read its cell from a row.
Column = tuple[str, Callable[[Mapping[str, Any]], Any]]


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document instead")


def field(name: str) -> Callable[[Mapping[str, Any]], Any]:
    """A column reading ``row[name]`` (absent: nothing)."""
    return lambda row: row.get(name)


def cell(value: Any) -> str:
    """A value as a table shows it: nothing as ``-``, booleans as ``yes``/``no``, lists
    joined by commas, objects as compact JSON."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(cell(item) for item in value) or "-"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> str:
    """Rows under a header, columns padded to their widest cell."""
    lines = [[header for header, _ in columns]]
    lines += [[cell(read(row)) for _, read in columns] for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    return "\n".join(
        "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def fields(pairs: Sequence[tuple[str, Any]]) -> str:
    """One object as ``name: value`` lines, the values aligned."""
    width = max(len(name) for name, _ in pairs)
    return "\n".join(f"{name + ':':<{width + 1}} {cell(value)}" for name, value in pairs)


def emit(args: argparse.Namespace, document: Any, readable: Callable[[Any], str]) -> None:
    """``document`` as JSON with ``--json``, else as ``readable`` renders it."""
    if getattr(args, "json", False):
        print_json(document)
    else:
        print(readable(document))
