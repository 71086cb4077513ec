"""The reference tables of the docs name everything the code has: every setting (with its
default) in docs/operations.md and every command in docs/cli.md."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

from broker.cli import build_parser
from broker.settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs"


def table_rows(text: str, header: str) -> list[list[str]]:
    """The cells of the markdown table whose header row starts with ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def test_every_setting_is_in_the_operations_table() -> None:
    rows = table_rows((DOCS / "operations.md").read_text(), "| setting | default |")
    documented = [name for row in rows for name in re.findall(r"`(\w+)`", row[0])]
    assert sorted(documented) == sorted(f.name for f in fields(Settings))
    defaults = {row[0]: row[1] for row in rows}
    assert defaults["`rate_limit_per_second`"] == str(Settings().rate_limit_per_second) == "50"


def commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> Iterator[str]:
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not groups:
        yield " ".join(prefix)
    for group in groups:
        for name, sub in group.choices.items():
            yield from commands(sub, (*prefix, name))


def test_every_command_is_in_the_cli_table() -> None:
    rows = table_rows((DOCS / "cli.md").read_text(), "| command | what |")
    documented = " ".join(row[0] for row in rows)
    missing = [c for c in commands(build_parser()) if f"`{c}" not in documented]
    assert missing == []
    assert "`collateral import FILE..." in documented


def test_the_architecture_layout_names_every_package_and_module() -> None:
    text = (DOCS / "architecture.md").read_text()
    layout = text.split("\nbroker/\n")[1].split("\nhsm/")[0]
    broker = DOCS.parent / "broker"
    packages = sorted(p.parent.name for p in broker.glob("*/__init__.py"))
    modules = sorted(
        p.name for p in broker.glob("*.py") if p.name not in ("__init__.py", "__main__.py")
    )
    named = set(re.findall(r"(\w+)/", layout))
    assert [p for p in packages if p not in named] == []
    assert [m for m in modules if m not in layout] == []
    assert "cli.py" not in layout
