"""The SQL files shipped in ``sql/``: ordered migrations and named queries.

Only ``broker/store/`` runs queries. Each of its modules binds the texts it runs at import
(:func:`query`), so a misspelt name fails the import rather than a request, and passes
them to asyncpg as ``LiteralString`` (PEP 675): SQL is never assembled from values, which
travel as ``$n`` parameters only. The files are read once, when this module is imported.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable
from typing import LiteralString

_MIGRATION_NAME = re.compile(r"([0-9]{4})_([a-z0-9_]+)\.sql")  # fullmatch, ASCII digits
_QUERY_HEADER = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


def _sql_dir() -> Traversable:
    return resources.files("broker.store").joinpath("sql")


def _read_migrations() -> tuple[Migration, ...]:
    found = []
    for entry in _sql_dir().joinpath("migrations").iterdir():
        match = _MIGRATION_NAME.fullmatch(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..n without gaps, found {versions}")
    return tuple(found)


def _read_queries() -> dict[str, LiteralString]:
    """Every named query of ``sql/queries/*.sql``; a duplicate name is an error.

    The texts are files of the package, never built from input: literal in the sense of
    PEP 675, which this is the one place to assert (mypy treats ``LiteralString`` as
    ``str``; a checker that enforces it would flag exactly this function).
    """
    named: dict[str, LiteralString] = {}
    for entry in sorted(_sql_dir().joinpath("queries").iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        text = entry.read_text("utf-8")
        headers = list(_QUERY_HEADER.finditer(text))
        for index, header in enumerate(headers):
            end = headers[index + 1].start() if index + 1 < len(headers) else len(text)
            body = _strip_comments(text[header.end() : end]).strip().rstrip(";").strip()
            name = header.group(1)
            if name in named:
                raise RuntimeError(f"query {name} is defined twice")
            named[name] = body
    return named


def _strip_comments(sql: str) -> str:
    return "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))


#: Every migration of ``sql/migrations``, in order.
MIGRATIONS = _read_migrations()
#: Every named query of ``sql/queries``, by name.
QUERIES: Mapping[str, LiteralString] = _read_queries()
_NAMES = {text: name for name, text in QUERIES.items()}


def query(name: str) -> LiteralString:
    """The text of the named query ``name``."""
    try:
        return QUERIES[name]
    except KeyError:
        raise LookupError(f"no query named {name} in sql/queries") from None


def name_of(text: str) -> str:
    """The name of a named query's text: for stand-ins and statistics that observe which
    statement ran. Raises ``LookupError`` for any other text."""
    try:
        return _NAMES[text]
    except KeyError:
        raise LookupError("not the text of a named query") from None


def schema_sql() -> str:
    return _sql_dir().joinpath("schema.sql").read_text("utf-8")
