"""One way to do each small thing (docs/architecture.md §9, "One way to do each small thing").

Each convention is a function that finds its breaches in a module's source; the tree must
have none, and each finder is shown finding a sample breach.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("broker/**/*.py", "hsm/**/*.py")


def breaches(find: Callable[[str], list[str]], *, skip: tuple[str, ...] = ()) -> list[str]:
    """``<file>: <breach>`` for each breach ``find`` sees in the product's modules."""
    return [
        f"{relative}: {breach}"
        for pattern in PRODUCT
        for path in sorted(ROOT.glob(pattern))
        if (relative := path.relative_to(ROOT).as_posix()) not in skip
        for breach in find(path.read_text(encoding="utf-8"))
    ]


# --- instants are written by broker.timeutil.iso alone -------------------------------------

_FORMATTING = re.compile(r"\.(isoformat|strftime)\(")


def formatting_calls(source: str) -> list[str]:
    """Each ``x.isoformat(`` or ``x.strftime(`` in ``source``."""
    return [match.group(0) for match in _FORMATTING.finditer(source)]


# --- every memo is an Lru: no functools cache ----------------------------------------------

_FUNCTOOLS_CACHES = frozenset({"cache", "lru_cache", "cached_property"})


def functools_caches(source: str) -> list[str]:
    """Each functools cache ``source`` uses, imported by name or named through the module."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module == "functools":
            found += [f"functools.{a.name}" for a in node.names if a.name in _FUNCTOOLS_CACHES]
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "functools"
            and node.attr in _FUNCTOOLS_CACHES
        ):
            found.append(f"functools.{node.attr}")
    return found


# --- a format is read by parse_<what>(data), never X.from_bytes ----------------------------


def from_bytes_methods(source: str) -> list[str]:
    """``<class>.from_bytes`` for each class in ``source`` that defines one."""
    return [
        f"{node.name}.{item.name}"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ClassDef)
        for item in node.body
        if isinstance(item, ast.FunctionDef) and item.name == "from_bytes"
    ]


def test_instants_are_written_only_through_timeutil() -> None:
    assert breaches(formatting_calls, skip=("broker/timeutil.py",)) == []


def test_no_functools_cache_beside_lru() -> None:
    assert breaches(functools_caches) == []


def test_formats_are_read_by_parse_functions() -> None:
    assert breaches(from_bytes_methods) == []


_PRIVATE_ISO = 'def _iso(v):\n    return v.isoformat().replace("+00:00", "Z")'
_CACHED = "from functools import cache\n@cache\ndef f(): ..."
_LRU_CACHED = "import functools\np = functools.lru_cache(maxsize=8)(load)"
_FROM_BYTES = "class Quote:\n    @classmethod\n    def from_bytes(cls, data): ..."


@pytest.mark.parametrize(
    ("find", "source", "found"),
    [
        (formatting_calls, _PRIVATE_ISO, [".isoformat("]),
        (formatting_calls, 'x.strftime("%Y")', [".strftime("]),
        (formatting_calls, "datetime.fromisoformat(text)", []),
        (functools_caches, _CACHED, ["functools.cache"]),
        (functools_caches, _LRU_CACHED, ["functools.lru_cache"]),
        (functools_caches, "from functools import cached_property", ["functools.cached_property"]),
        (functools_caches, "import functools\nf = functools.partial(g, 1)", []),
        (from_bytes_methods, _FROM_BYTES, ["Quote.from_bytes"]),
        (from_bytes_methods, "def parse_quote(data): ...\nx = int.from_bytes(b'', 'big')", []),
    ],
)
def test_each_finder_sees_its_breach(
    find: Callable[[str], list[str]], source: str, found: list[str]
) -> None:
    assert find(source) == found


# --- asserts only in tests (ruff S101, pyproject.toml) -------------------------------------


def ruff_findings(path: str, source: str) -> list[str]:
    """The rule codes ruff reports for ``source`` as if it were the file ``path``, with the
    repository's configuration."""
    command = [sys.executable, "-m", "ruff", "check", "--output-format=concise", "--no-cache"]
    done = subprocess.run(
        [*command, "--stdin-filename", path, "-"],
        input=source,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    return re.findall(r": ([A-Z]+[0-9]+) ", done.stdout)


@pytest.mark.parametrize("path", ["broker/x.py", "hsm/x.py", "benchmarks/x.py", "fuzz/x.py"])
def test_an_assert_outside_tests_is_refused(path: str) -> None:
    assert ruff_findings(path, "def f(x: int) -> None:\n    assert x\n") == ["S101"]


def test_an_assert_in_tests_is_allowed() -> None:
    assert ruff_findings("tests/unit/x.py", "def f(x: int) -> None:\n    assert x\n") == []
