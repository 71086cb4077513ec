"""The layers point one way (docs/architecture.md §3, §9 "Layers point one way").

Each rule names the files it holds and the modules they must not import, with what the rule
allows among those. Imports are read from the source (top level and inside functions alike),
so a rule holds whether or not a module is imported at run time; each rule is shown refusing
one violation below. Every module of broker/ and hsm/ is also imported on its own, with none
of ours loaded before it, so that a cycle or a dependence on import order shows.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
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
    # Adapters translate the wire and call the services (release/, admin/, readiness): they
    # name no query, touch no token, and hold neither the pool nor the custody. The console
    # is one more adapter: HTML over the admin service.
    Rule(
        "adapters-through-services",
        ("broker/api/**/*.py", "broker/console/**/*.py"),
        ("broker.store", "broker.runtime", "broker.hsmcalls", "hsm"),
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
        (
            "adapters-through-services",
            "broker/api/admin.py",
            "from broker.store import admin_tokens",
            "broker.store.admin_tokens",
        ),
        (
            "adapters-through-services",
            "broker/api/guest.py",
            "from hsm.pubkey import from_jwk",
            "hsm.pubkey.from_jwk",
        ),
        (
            "adapters-through-services",
            "broker/api/kbs/x.py",
            "from broker.hsmcalls import hsm_errors",
            "broker.hsmcalls.hsm_errors",
        ),
        (
            "adapters-through-services",
            "broker/api/health.py",
            "import broker.runtime",
            "broker.runtime",
        ),
        (
            "adapters-through-services",
            "broker/console/pages.py",
            "from broker.store import audit",
            "broker.store.audit",
        ),
    ],
)
def test_each_rule_refuses_its_violation(name: str, path: str, source: str, found: str) -> None:
    assert violations(RULE[name], {path: source}) == [f"{path}: {found}"]


def test_what_a_rule_allows_passes() -> None:
    source = "from broker.store.database import Database\nfrom broker import errors\nimport os"
    assert violations(RULE["localstate-is-a-leaf"], {"broker/localstate/x.py": source}) == []


# --- adapters never reach the runtime -------------------------------------------------------


def runtime_reads(source: str) -> list[str]:
    """Each ``<...>.runtime`` read in ``source``, as its source text."""
    return [
        ast.unparse(node)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute) and node.attr == "runtime"
    ]


def test_no_adapter_reads_the_runtime() -> None:
    """The runtime holds the database pool and the HSM custody: an adapter that reads it off
    the application's state reaches both past every service (docs §9)."""
    found = [
        f"{path}: {read}"
        for path, source in _sources(RULE["adapters-through-services"]).items()
        for read in runtime_reads(source)
    ]
    assert found == []


def test_a_runtime_read_is_found() -> None:
    source = "public = request.app.state.runtime.custody.signing_public_key"
    assert runtime_reads(source) == ["request.app.state.runtime"]
    assert runtime_reads("service = request.app.state.release") == []


# --- every module imported on its own --------------------------------------------------------

# Run in a child interpreter: for each module, forget every module of the given top-level
# packages, then import it. Third-party modules stay loaded (they are not under test).
_IMPORT_EACH = """
import importlib, json, sys
tops, names = json.load(sys.stdin)
failures = []
for name in names:
    for loaded in [m for m in sys.modules if m.partition(".")[0] in tops]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except BaseException as exc:
        failures.append(f"{name}: {type(exc).__name__}: {exc}")
json.dump(failures, sys.stdout)
"""


def import_failures(root: Path, names: Sequence[str], *, children: int = 1) -> list[str]:
    """``<module>: <error>`` for each of ``names`` (modules under ``root``) that does not
    import on its own; the modules are shared among ``children`` interpreters."""
    tops = sorted({name.partition(".")[0] for name in names})
    shares = [list(names[index::children]) for index in range(children)]
    running = [
        subprocess.Popen(
            [sys.executable, "-c", _IMPORT_EACH],
            cwd=root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in shares
    ]
    failures: list[str] = []
    for child, share in zip(running, shares, strict=True):
        out, _ = child.communicate(json.dumps([tops, share]))
        assert child.returncode == 0, out
        failures += json.loads(out)
    return sorted(failures)


def module_names(root: Path, tops: Sequence[str]) -> list[str]:
    """Every module of the packages ``tops`` under ``root``, but ``__main__`` (importing it
    runs the program)."""
    names = []
    for top in tops:
        for path in sorted((root / top).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__main__":
                continue
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_every_module_imports_on_its_own() -> None:
    names = module_names(ROOT, ("broker", "hsm"))
    assert len(names) > 150
    assert import_failures(ROOT, names, children=min(2, os.cpu_count() or 1)) == []


def test_an_import_order_dependence_shows(tmp_path: Path) -> None:
    """``a`` imports ``b`` before it defines ``A``, and ``b`` reads ``a.A`` as it loads: ``a``
    imports only after ``b`` did. A check in one shared interpreter, ``b`` first, would pass."""
    package = tmp_path / "sample"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("import sample.b\n\nA = 1\n")
    (package / "b.py").write_text("import sample.a\n\nB = sample.a.A\n")
    assert module_names(tmp_path, ("sample",)) == ["sample", "sample.a", "sample.b"]
    failures = import_failures(tmp_path, ["sample.b", "sample.a"])
    assert [failure.partition(" (")[0].split(": ")[:2] for failure in failures] == [
        ["sample.a", "AttributeError"]
    ]
    assert "circular import" in failures[0]
    shared = [sys.executable, "-c", "import sample.b, sample.a"]
    assert subprocess.run(shared, cwd=tmp_path, check=False).returncode == 0
