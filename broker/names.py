"""Names of keys and policies: lowercase, digits, ``.``, ``_`` and ``-``, at most 128; and
the KBS resource paths keys answer at (``repository/type/tag``).

Checked where a name enters (API, CLI) so that a bad one is a clear 400 before any HSM or
database work; the database enforces the same pattern as a last line (sql/migrations).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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


# One segment of a KBS resource path, as Trustee's resource plugin accepts it (its
# ResourceDesc pattern: a letter, digit, ``_`` or ``-``, then those or ``.``), at most 128.
_KBS_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")


@dataclass(frozen=True, slots=True)
class KbsPath:
    """``repository/type/tag`` of ``GET /kbs/v0/resource/<repository>/<type>/<tag>``."""

    repository: str
    type: str
    tag: str

    def __str__(self) -> str:
        return f"{self.repository}/{self.type}/{self.tag}"


def parse_kbs_path(text: str) -> KbsPath:
    """``repository/type/tag``; ``BadRequest`` unless it is exactly three valid segments."""
    parts = text.split("/")
    if len(parts) != 3 or not all(_KBS_SEGMENT.fullmatch(part) for part in parts):
        raise BadRequest(
            f"KBS path {text[:200]!r} is not repository/type/tag, each 1-128 of A-Z a-z 0-9 "
            "_ - . not starting with ."
        )
    return KbsPath(*parts)
