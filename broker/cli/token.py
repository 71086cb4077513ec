"""``keybroker token repair``: a token left with two objects under one of the broker's labels.

Brokers refuse such a token (they could each pick another key). Older versions could leave
one when replicas started together on a fresh token; provisioning is now serialised by the
database's lock on the token's objects, which this command takes too. It prints what it
would keep and destroy (``hsm/repair.py`` decides), and destroys only with ``--yes``,
auditing what it destroyed. Stop every broker on the token first.
"""

from __future__ import annotations

import argparse
from typing import Any

import pkcs11

from broker.cli import locate
from broker.cli.common import (
    add_settings_arguments,
    cli_actor,
    fail,
    run_async,
    settings_from,
    with_database,
)
from broker.errors import KeybrokerError
from broker.hsmcalls import hsm_errors
from broker.store import audit, kek, keys
from broker.store.audit import AuditRecord
from broker.store.database import Database
from broker.store.sqlfiles import Migration
from broker.timeutil import utcnow
from hsm import repair
from hsm.sessions import SessionPool


def register(subparsers: Any) -> None:
    token = subparsers.add_parser("token", help="the broker's objects on the HSM token")
    actions = token.add_subparsers(dest="action", required=True, metavar="ACTION")
    parser = actions.add_parser(
        "repair",
        help="keep one object under each of the broker's labels (stop every broker first)",
    )
    add_settings_arguments(parser)
    parser.add_argument(
        "--yes", action="store_true", help="destroy the duplicates (without it: print the plan)"
    )
    parser.set_defaults(func=run_repair)


def run_repair(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    location = locate.hsm_location(settings)

    def on_token(session: pkcs11.Session, blobs: dict[str, list[bytes]]) -> list[str]:
        planned = repair.plan(session, blobs)
        if args.yes:
            repair.apply(planned)
        return [duplicate.describe() for duplicate in planned]

    async def run(db: Database, _applied: list[Migration]) -> list[str]:
        async with db.transaction() as conn:
            await kek.lock_token_objects(conn)
            blobs = await keys.wrapped_blobs(conn)
            with hsm_errors():
                pool = SessionPool(location.module, location.token_label, location.user_pin, 0)
                try:
                    described = pool.run_sync(lambda session: on_token(session, blobs))
                finally:
                    pool.close()
            if args.yes and described:
                details = {"action": "token.repair", "actor": cli_actor(), "destroyed": described}
                await audit.append(conn, AuditRecord(utcnow(), "admin", "ok", None, None, details))
        return described

    try:
        described = run_async(lambda: with_database(settings, run))
    except KeybrokerError as exc:
        return fail(exc)
    if not described:
        print("the token holds one object under each of the broker's labels: nothing to repair")
        return 0
    for line in described:
        print(line)
    print("repaired" if args.yes else "nothing destroyed: run again with --yes to repair")
    return 0
