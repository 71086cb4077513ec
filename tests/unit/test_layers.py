"""The layers point one way (docs/architecture.md §3, §9 "Layers point one way").

Each rule names the files it holds and the modules they must not import, with what the rule
allows among those. Imports are read from the source (top level and inside functions alike),
so a rule holds whether or not a module is imported at run time; each rule is shown refusing
one violation below.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Rule:
    name: str
    files: tuple[str, ...]  # globs under the repository root
    forbidden: tuple[str, ...]  # module prefixes
    allowed: tuple[str, ...] = ()  # prefixes allowed among the forbidden ones


RULES = (
    # broker may import hsm; never the reverse.
    Rule("hsm-stands-alone", ("hsm/**/*.py",), ("broker",)),
    # The local cluster and token sit below everything but the store they create.
    Rule(
        "localstate-is-a-leaf",
        ("broker/localstate/**/*.py",),
        ("broker",),
        (
            "broker.errors",
            "broker.redact",
            "broker.privatefiles",
            "broker.store",
            "broker.localstate",
        ),
    ),
    # The production runtime and the simulators know no development set-up.
    Rule(
        "no-local-state-below-the-cli",
        ("broker/runtime.py", "broker/simulate/**/*.py"),
        ("broker.localstate", "broker.cli"),
    ),
    # The product does not depend on its benchmarks or its tests.
    Rule("product-without-benchmarks", ("broker/**/*.py", "hsm/**/*.py"), ("benchmarks", "tests")),
    Rule("unit-tests-without-benchmarks", ("tests/unit/**/*.py",), ("benchmarks",)),
)


def imported(source: str) -> Iterator[str]:
    """Each module (or module attribute) an absolute import in ``source`` names:
    ``import a.b`` gives ``a.b``, ``from a import b`` gives ``a.b``."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(rule: Rule, sources: Mapping[str, str]) -> list[str]:
    """``<file>: <import>`` for each import of ``sources`` that ``rule`` forbids."""
    return [
        f"{path}: {name}"
        for path, source in sources.items()
        for name in imported(source)
        if any(_under(name, p) for p in rule.forbidden)
        and not any(_under(name, a) for a in rule.allowed)
    ]


def _sources(rule: Rule) -> dict[str, str]:
    paths = sorted({path for pattern in rule.files for path in ROOT.glob(pattern)})
    return {str(path.relative_to(ROOT)): path.read_text(encoding="utf-8") for path in paths}


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.name)
def test_the_tree_keeps_the_rule(rule: Rule) -> None:
    sources = _sources(rule)
    assert sources, f"{rule.name} holds no file"
    assert violations(rule, sources) == []


RULE = {rule.name: rule for rule in RULES}


@pytest.mark.parametrize(
    ("name", "path", "source", "found"),
    [
        (
            "hsm-stands-alone",
            "hsm/x.py",
            "from broker.redact import Secret",
            "broker.redact.Secret",
        ),
        ("hsm-stands-alone", "hsm/x.py", "def f():\n    import broker.lru", "broker.lru"),
        ("localstate-is-a-leaf", "broker/localstate/x.py", "from broker import cli", "broker.cli"),
        ("localstate-is-a-leaf", "broker/localstate/x.py", "import broker.app", "broker.app"),
        (
            "no-local-state-below-the-cli",
            "broker/runtime.py",
            "import broker.localstate",
            "broker.localstate",
        ),
        (
            "no-local-state-below-the-cli",
            "broker/simulate/x.py",
            "from broker.cli import locate",
            "broker.cli.locate",
        ),
        (
            "product-without-benchmarks",
            "broker/x.py",
            "from tests.fakes import glue",
            "tests.fakes.glue",
        ),
        ("product-without-benchmarks", "hsm/x.py", "import benchmarks.glue", "benchmarks.glue"),
        ("unit-tests-without-benchmarks", "tests/unit/x.py", "import benchmarks", "benchmarks"),
    ],
)
def test_each_rule_refuses_its_violation(name: str, path: str, source: str, found: str) -> None:
    assert violations(RULE[name], {path: source}) == [f"{path}: {found}"]


def test_what_a_rule_allows_passes() -> None:
    source = "from broker.store.database import Database\nfrom broker import errors\nimport os"
    assert violations(RULE["localstate-is-a-leaf"], {"broker/localstate/x.py": source}) == []
