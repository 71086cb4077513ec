"""The lean guest client needs the standard library and ``cryptography``, nothing else: its
declared dependencies say so, its imports say so, and it runs in an interpreter that can see
only the standard library, itself and ``cryptography`` (with what ``cryptography`` itself
requires)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import socket
import subprocess
import sys
from pathlib import Path

import keybroker_guest

PACKAGE = Path(keybroker_guest.__file__).parent
HEAVY = ("asyncpg", "pkcs11", "starlette", "uvicorn", "httpx", "broker", "hsm", "structlog")


def _imports(tree: ast.Module) -> list[tuple[str, bool]]:
    """(top-level module, imported at module level) of every import in ``tree``."""
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [(name.split(".")[0], id(node) in top) for name in names]
    return found


def test_the_declared_dependency_is_cryptography_alone() -> None:
    assert importlib.metadata.requires("keybroker-guest") == ["cryptography>=43"]


def test_every_import_is_the_standard_library_itself_or_cryptography() -> None:
    allowed = set(sys.stdlib_module_names) | {"keybroker_guest", "cryptography", "__future__"}
    deferred = []
    modules = sorted(PACKAGE.glob("*.py"))
    assert len(modules) >= 10
    for module in modules:
        for name, at_top in _imports(ast.parse(module.read_text(), str(module))):
            if name not in allowed:
                deferred.append((module.name, name, at_top))
    # The one exception: --simulate borrows the full package's synthetic vendors, imported
    # inside the function that needs them, so the client runs without them.
    assert deferred == [("evidence.py", "broker", False)]


def _closure(distribution: str) -> set[str]:
    """``distribution`` and every distribution it requires (markers that apply here)."""
    seen: set[str] = set()
    todo = [distribution]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for requirement in importlib.metadata.requires(name) or []:
            text, _, marker = requirement.partition(";")
            if "extra ==" in marker:
                continue
            match = re.match(r"[A-Za-z0-9_.-]+", text.strip())
            assert match is not None
            todo.append(match.group(0))
    return seen


def _minimal_site(target: Path) -> list[str]:
    """Links in ``target`` to the installed files of cryptography's closure; their names."""
    linked = set()
    for name in _closure("cryptography"):
        distribution = importlib.metadata.distribution(name)
        for file in distribution.files or []:
            top = file.parts[0]
            if top.endswith((".dist-info", ".data")) or top in ("..", "__pycache__"):
                continue
            source = Path(str(distribution.locate_file(top)))
            if source.exists() and not (target / top).exists():
                (target / top).symlink_to(source)
                linked.add(top)
    return sorted(linked)


def test_the_client_runs_where_only_cryptography_is_installed(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    linked = _minimal_site(site)
    assert "cryptography" in linked
    assert not any(name.startswith(HEAVY) for name in linked), linked
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    program = f"""
import sys
sys.path[:0] = [{str(PACKAGE.parent)!r}, {str(site)!r}]
import importlib, pkgutil, keybroker_guest
for module in pkgutil.iter_modules(keybroker_guest.__path__):
    importlib.import_module("keybroker_guest." + module.name)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
assert not heavy, heavy
from keybroker_guest.cli import main
sys.exit(main(["fetch", "--url", "http://127.0.0.1:{port}", "--key", "k", "--tee", "snp",
               "--wait", "0"]))
"""
    # -I -S: no user or site packages, no environment; the base interpreter, not this venv.
    base = getattr(sys, "_base_executable", sys.executable)
    result = subprocess.run(
        [base, "-I", "-S", "-c", program], capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stdout, result.stderr) == (
        3,
        "",
        f"keybroker-guest: cannot reach http://127.0.0.1:{port}: Connection refused "
        "(gave up after 1 attempt)\n",
    )
