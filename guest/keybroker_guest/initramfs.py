"""``keybroker-guest initramfs-files``: every file the pin needs in a boot image, one a line.

The dracut module and the initramfs-tools hook (``boot/`` in this package, docs/boot.md) ask
the installed client rather than guess: the interpreter it runs under, that interpreter's
standard library (without what a boot never imports: tests, IDLE, Tk, ensurepip), its
compiled extension modules, this package, ``cryptography`` and what ``cryptography`` itself
loads, and the three console scripts. The hooks copy them and let their tools add the
shared libraries the executables and extension modules link against.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: Distributions the client runs on; cffi is what cryptography loads to reach OpenSSL.
DISTRIBUTIONS = ("keybroker-guest", "cryptography", "cffi")
SCRIPTS = ("keybroker-guest", "clevis-encrypt-keybroker", "clevis-decrypt-keybroker")
_UNNEEDED = frozenset(
    {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data"}
)
_UNNEEDED_PARTS = frozenset({"__pycache__", "test", "tests", "idle_test"})


def _standard_library() -> Iterator[Path]:
    for key in ("stdlib", "platstdlib"):
        root = Path(sysconfig.get_paths()[key])
        for path in sorted(root.rglob("*")):
            parts = path.relative_to(root).parts
            if parts[0] in ("site-packages", *_UNNEEDED) or _UNNEEDED_PARTS & set(parts):
                continue
            if path.is_file() and path.suffix in (".py", ".so"):
                yield path


def _distribution_files(name: str) -> Iterator[Path]:
    distribution = importlib.metadata.distribution(name)
    for file in distribution.files or []:
        path = Path(str(distribution.locate_file(file))).resolve()
        skipped = "__pycache__" in file.parts or file.parts[0].endswith(".dist-info")
        if not skipped and path.is_file() and path.suffix != ".pyc":
            yield path
    # An editable install lists no sources: the package is wherever it is imported from.
    if name == "keybroker-guest":
        package = Path(__file__).resolve().parent
        yield from (path for path in sorted(package.rglob("*.py")) if path.is_file())


def files() -> list[str]:
    # The scripts name the interpreter as installed (a venv's bin/python, say, a link to the
    # system's); a venv's interpreter finds its site-packages through pyvenv.cfg.
    found: dict[str, None] = {sys.executable: None, os.path.realpath(sys.executable): None}
    venv = Path(sys.prefix) / "pyvenv.cfg"
    if venv.is_file():
        found[str(venv)] = None
    found.update((str(path), None) for path in _standard_library())
    for name in DISTRIBUTIONS:
        found.update((str(path), None) for path in _distribution_files(name))
    scripts = Path(sysconfig.get_paths()["scripts"])
    found.update((str(scripts / script), None) for script in SCRIPTS)
    return list(found)


def run_files(args: argparse.Namespace) -> int:
    sys.stdout.write("".join(f"{path}\n" for path in files()))
    return 0


def register(actions: Any) -> None:
    parser = actions.add_parser(
        "initramfs-files", help="list the files the pin needs in a boot image (docs/boot.md)"
    )
    parser.set_defaults(func=run_files)
