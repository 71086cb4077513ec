"""The reference tables of the docs name everything the code has: every setting (with its
default) in docs/operations.md and every command in docs/cli.md; the error tables of
docs/api.md give each problem type the status the broker answers it with; the layout of
docs/architecture.md §3 names every module and folder there is, and nothing else."""

from __future__ import annotations

import argparse
import fnmatch
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, fields
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


# --- docs/architecture.md §3: the layout block, exact to the tree both ways -----------------

REPOSITORY = DOCS.parent
#: A path the block's prose names: ``x.py``, ``roots/``, ``sql/queries/``, ``docs/claims.md``.
_PATH = re.compile(
    r"(?<![\w./<-])((?:[\w.-]+/)*[\w.-]*[\w-](?:\.(?:py|json|yaml|md|sql|pem|template|typed)|/))"
    r"(?![\w/])"
)
#: Named whole: every module and folder.
_PRODUCT = ("broker", "hsm")
#: Named by folder: the folder and every folder directly in it.
_BY_FOLDER = ("policies", "sql", "softhsm", "benchmarks", "fuzz", "tests")


@dataclass
class Entry:
    """A line of the layout block with a name at the left, and the lines that continue it."""

    parent: str  # the folder of the names at the left ("" at the top)
    names: list[str]
    text: str = ""

    @property
    def folders(self) -> list[str]:
        return [self.parent + name for name in self.names if name.endswith("/")]


def layout_entries(text: str) -> list[Entry]:
    """The entries of the layout block of ``text`` (the code block that opens with
    ``broker/``): indentation nests a name under the folder line above it; a line that starts
    past column 30 continues the entry above."""
    block = text.split("```\nbroker/\n", 1)[1].split("```", 1)[0]
    entries: list[Entry] = []
    folders: list[tuple[int, str]] = []  # (indentation, folder) of the open folder lines
    for line in ["broker/", *block.splitlines()]:
        if not line[:30].strip():
            entries[-1].text += " " + line.strip()
            continue
        match = re.fullmatch(r"( *)(\S.*?)(?: {2,}(.*))?", line)
        assert match, line
        indent, names = len(match.group(1)), match.group(2).split(", ")
        while folders and folders[-1][0] >= indent:
            folders.pop()
        entry = Entry(folders[-1][1] if folders else "", names, match.group(3) or "")
        entries.append(entry)
        if len(names) == 1 and names[0].endswith("/"):
            folders.append((indent, entry.parent + names[0]))
    return entries


def named_paths(entries: list[Entry], root: Path) -> tuple[set[str], list[str]]:
    """Every path the entries name, and every name that names nothing.

    A name at the left is under the folder line above it. A path in an entry's prose is
    under the folders the entry names (each where it exists), else under the entry's own
    folder, else under the repository: ``claims.py`` on the ``tdx/, sgx/`` line names both
    packages' modules, ``hsm/redact.py`` on a line of ``broker/`` names the one at the top.
    """
    found: set[str] = set()
    missing: list[str] = []
    for entry in entries:
        for name in entry.names:
            path = entry.parent + name
            (found.add if _exists(root, path) else missing.append)(path.rstrip("/"))
        for name in _PATH.findall(entry.text):
            for bases in (entry.folders, [entry.parent], [""]):
                hits = [base + name for base in bases if _exists(root, base + name)]
                if hits:
                    found.update(hit.rstrip("/") for hit in hits)
                    break
            else:
                missing.append(f"{name} (on the line of {', '.join(entry.names)})")
    return found, missing


def _exists(root: Path, path: str) -> bool:
    target = root / path
    return target.is_dir() if path.endswith("/") else target.exists() or target.is_symlink()


def tree_paths(
    root: Path, product: tuple[str, ...] = _PRODUCT, by_folder: tuple[str, ...] = _BY_FOLDER
) -> set[str]:
    """What the block must name: every module and folder of broker/ and hsm/ (a package's
    ``__init__.py`` is named by its folder, a symbolic link to a folder by its own name), and
    each of the other top-level folders with the folders directly in it."""
    wanted: set[str] = set()
    for top in product:
        for folder, dirs, files in os.walk(root / top):  # symbolic links are not followed
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            relative = Path(folder).relative_to(root).as_posix()
            wanted.add(relative)
            wanted.update(
                f"{relative}/{name}"
                for name in (*dirs, *files)
                if (name.endswith(".py") and name != "__init__.py")
                or (Path(folder) / name).is_symlink()
            )
    for top in by_folder:
        wanted.add(top)
        wanted.update(
            f"{top}/{child.name}"
            for child in (root / top).iterdir()
            if child.is_dir() and child.name != "__pycache__"
        )
    return wanted


def top_level_names(text: str) -> set[str]:
    """The first part of every path the "Top level:" paragraph names."""
    paragraph = text.split("\nTop level: ", 1)[1].split("\n\n", 1)[0]
    return {name.split("/")[0] for name in re.findall(r"`([^` ]+)`", paragraph)}


def tracked_top_level(root: Path) -> set[str]:
    """What the repository holds at its top, less what .gitignore leaves out."""
    ignored = [
        line.strip().rstrip("/")
        for line in (root / ".gitignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return {
        name
        for name in os.listdir(root)
        if name != ".git" and not any(fnmatch.fnmatch(name, pattern) for pattern in ignored)
    }


def test_the_layout_names_only_what_exists() -> None:
    _, missing = named_paths(layout_entries((DOCS / "architecture.md").read_text()), REPOSITORY)
    assert missing == []


def test_the_layout_names_every_module_and_folder() -> None:
    found, _ = named_paths(layout_entries((DOCS / "architecture.md").read_text()), REPOSITORY)
    assert sorted(tree_paths(REPOSITORY) - found) == []


def test_the_top_level_is_named_whole() -> None:
    text = (DOCS / "architecture.md").read_text()
    assert top_level_names(text) == tracked_top_level(REPOSITORY)


_SAMPLE = """
Top level: `broker/`, `gone.txt`.

```
broker/
  app.py, ghost.py                 the app
  api/                             adapters: admin.py, phantom.py,
                                     and problem.py
    deep/                          nested
```
"""


def test_the_layout_checks_fail_on_a_sample(tmp_path: Path) -> None:
    for path in ("broker/app.py", "broker/api/admin.py", "broker/api/problem.py"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("")
    (tmp_path / "broker/api/unnamed.py").write_text("")
    (tmp_path / "broker/cli").mkdir()
    (tmp_path / "broker/sql").symlink_to(tmp_path / "broker/cli")
    entries = layout_entries(_SAMPLE)
    assert [(e.parent, e.names) for e in entries] == [
        ("", ["broker/"]),
        ("broker/", ["app.py", "ghost.py"]),
        ("broker/", ["api/"]),
        ("broker/api/", ["deep/"]),
    ]
    found, missing = named_paths(entries, tmp_path)
    assert missing == ["broker/ghost.py", "phantom.py (on the line of api/)", "broker/api/deep"]
    unnamed = tree_paths(tmp_path, ("broker",), ()) - found
    assert sorted(unnamed) == ["broker/api/unnamed.py", "broker/cli", "broker/sql"]
    assert top_level_names(_SAMPLE) == {"broker", "gone.txt"}


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
