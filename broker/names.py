"""Names of keys and policies: lowercase, digits, ``.``, ``_`` and ``-``, at most 128.

Checked where a name enters (API, CLI) so that a bad one is a clear 400 before any HSM or
database work; the database enforces the same pattern as a last line (sql/migrations).
"""

from __future__ import annotations

import re

from broker.errors import BadRequest

# Matched with fullmatch: ``re.match`` with a final ``$`` also accepts a trailing newline
# ("disk-key\n"), which the database's own check then refuses as something else.
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")
MAX_VERSION = 2**31 - 1  # PostgreSQL integer


def checked_name(name: str, what: str) -> str:
    if not _NAME.fullmatch(name):
        raise BadRequest(
            f"{what} name {name[:64]!r} is not allowed: 1-128 of a-z 0-9 . _ - "
            "starting with a letter or digit"
        )
    return name


def checked_version(version: int | None, what: str) -> int | None:
    if version is not None and not 1 <= version <= MAX_VERSION:
        raise BadRequest(f"{what} version {version} outside 1..{MAX_VERSION}")
    return version
