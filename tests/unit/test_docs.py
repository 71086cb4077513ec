"""The reference tables of the docs name everything the code has: every setting (with its
default) in docs/operations.md and every command in docs/cli.md; the error tables of
docs/api.md give each problem type the status the broker answers it with."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

from broker.api.problem import status_for
from broker.cli import build_parser
from broker.errors import KeybrokerError
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


def _error_classes(root: type[KeybrokerError] = KeybrokerError) -> Iterator[type[KeybrokerError]]:
    for cls in root.__subclasses__():
        yield cls
        yield from _error_classes(cls)


def test_every_problem_type_in_the_api_error_tables_has_the_status_the_broker_gives() -> None:
    statuses: dict[str, set[int]] = {}
    for cls in _error_classes():  # status_for reads the class alone
        statuses.setdefault(cls.type, set()).add(status_for(cls.__new__(cls)))
    text = (DOCS / "api.md").read_text()
    tables = text.split("| status | `type` | when |")[1:]
    assert len(tables) == 2  # the guest flow's and the admin API's
    for table in tables:
        for row in table_rows("| status | `type` | when |" + table, "| status |"):
            for kind in re.findall(r"`([\w-]+)`", row[1]):
                assert int(row[0]) in statuses[kind], (kind, row[0])
