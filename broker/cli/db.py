"""``keybroker db migrate``."""

from __future__ import annotations

import argparse
from typing import Any

from broker.cli.common import add_settings_arguments, fail, run_async, settings_from, with_database
from broker.errors import KeybrokerError
from broker.store.database import Database
from broker.store.sqlfiles import Migration


def register(subparsers: Any) -> None:
    db = subparsers.add_parser("db", help="database schema")
    actions = db.add_subparsers(dest="action", required=True, metavar="ACTION")
    parser = actions.add_parser("migrate", help="apply pending migrations")
    add_settings_arguments(parser)
    parser.set_defaults(func=run_migrate)


def run_migrate(args: argparse.Namespace) -> int:
    settings = settings_from(args)

    async def names(db: Database, applied: list[Migration]) -> list[str]:
        return [f"{m.version:04d}_{m.name}" for m in applied]

    try:
        applied = run_async(lambda: with_database(settings, names))
    except KeybrokerError as exc:
        return fail(exc)
    print("applied: " + ", ".join(applied) if applied else "schema is up to date")
    return 0
