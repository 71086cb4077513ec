"""``keybroker collateral import FILE...`` and ``keybroker collateral list``.

Import fills the collateral store for deployments that cannot (or should not) reach AMD KDS
and Intel PCS: VCEKs, VLEKs, AMD cert chains and CRLs, Intel TCB Info, QE Identity, CRLs
and the TCB Signing chain, each recognised by content (``broker/collateral/detect.py``) and
stored under the key the attest-time lookups search. All files are checked first; if any is
refused, nothing is stored. The import and its audit record (kind ``admin``, action
``collateral.import``) commit in one transaction. Only the database is opened, not the HSM.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Any

from broker.cli.common import (
    add_settings_arguments,
    cli_actor,
    fail,
    print_json,
    read_input,
    run_async,
    settings_from,
    with_database,
)
from broker.collateral import keys
from broker.collateral.detect import ImportPlan, plan_import
from broker.collateral.store import CollateralItem
from broker.errors import KeybrokerError
from broker.store import audit, collateral
from broker.store.audit import AuditRecord
from broker.store.collateral import CollateralStore
from broker.store.database import Database
from broker.timeutil import iso, utcnow

KINDS = (
    keys.VCEK,
    keys.VLEK,
    keys.CERT_CHAIN,
    keys.CRL,
    keys.TCB_INFO,
    keys.QE_IDENTITY,
    keys.PCK_CRL,
    keys.ROOT_CRL,
    keys.TCB_SIGNING_CHAIN,
)

_IMPORT_EPILOG = """\
kinds are recognised by content: VCEK/VLEK certificates (DER or PEM), AMD cert chains
(ASK or ASVK + ARK) and ARK CRLs, Intel TCB Info and QE Identity JSON, PCK and Root CA
CRLs, TCB Signing chains (issuer chain files). --tee and --kind only check what is found.

example (an air-gapped SNP deployment, files fetched elsewhere from AMD KDS):
  keybroker collateral import vcek.der cert_chain.pem crl.der
"""


def register(subparsers: Any) -> None:
    group = subparsers.add_parser("collateral", help="the collateral store (offline import)")
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")

    imported = actions.add_parser(
        "import",
        help="store VCEKs, cert chains, CRLs, TCB Info, QE Identity from files",
        description="Import collateral files into the store the broker looks up at attest.",
        epilog=_IMPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    imported.add_argument("files", nargs="+", type=Path, metavar="FILE")
    imported.add_argument("--tee", choices=("snp", "tdx", "sgx"), help="refuse other TEEs'")
    imported.add_argument("--kind", choices=KINDS, help="refuse other kinds")
    imported.add_argument("--json", action="store_true", help="print one JSON object")
    add_settings_arguments(imported)
    imported.set_defaults(func=run_import)

    listed = actions.add_parser("list", help="show what the store holds (never the bodies)")
    listed.add_argument("--json", action="store_true", help="print a JSON list")
    add_settings_arguments(listed)
    listed.set_defaults(func=run_list)


# --- import ----------------------------------------------------------------------------------


def run_import(args: argparse.Namespace) -> int:
    files = [(str(path), read_input(path)) for path in args.files]
    actor = cli_actor()
    plan = plan_import(files, tee=args.tee, kind=args.kind, actor=actor)
    for name, reason in plan.refused:
        print(f"keybroker: {name}: {reason}", file=sys.stderr)
    if plan.refused:
        print("keybroker: nothing imported", file=sys.stderr)
        return 1
    settings = settings_from(args)
    try:
        run_async(lambda: with_database(settings, lambda db, _: _store(db, plan, actor)))
    except KeybrokerError as exc:
        return fail(exc)
    _report_import(plan, args.json)
    return 0


async def _store(db: Database, plan: ImportPlan, actor: str) -> None:
    async with db.transaction() as conn:
        await collateral.write(conn, plan.items)
        if plan.items:
            await audit.append(
                conn,
                AuditRecord(
                    utcnow(),
                    "admin",
                    "ok",
                    body={
                        "action": "collateral.import",
                        "actor": actor,
                        "items": [_audited(item) for item in plan.items],
                    },
                ),
            )


def _audited(item: CollateralItem) -> dict[str, Any]:
    return {
        "tee": item.key.tee,
        "kind": item.key.kind,
        "lookup_key": item.key.lookup_key,
        "sha256": hashlib.sha256(item.body).hexdigest(),
        "next_update": iso(item.next_update),
        "source": item.source,
    }


def _report_import(plan: ImportPlan, as_json: bool) -> None:
    now = utcnow()
    if as_json:
        print_json(
            {
                "imported": [item.summary(now) for item in plan.items],
                "skipped": [{"file": name, "reason": why} for name, why in plan.skipped],
            }
        )
        return
    for item in plan.items:
        expiry = f", next update {iso(item.next_update)}" if item.next_update else ""
        stale = " (STALE: past its next update)" if item.is_stale(now) else ""
        print(f"imported {item.key}{expiry}{stale} ({item.source})")
    for name, reason in plan.skipped:
        print(f"skipped {name}: {reason}")


# --- list ------------------------------------------------------------------------------------


def run_list(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    try:
        listed = run_async(
            lambda: with_database(settings, lambda db, _: CollateralStore(db).list())
        )
    except KeybrokerError as exc:
        return fail(exc)
    now = utcnow()
    summaries = [entry.summary(now) for entry in listed]
    if args.json:
        print_json(summaries)
        return 0
    for entry in summaries:
        state = "STALE" if entry["stale"] else "fresh"
        print(
            f"{entry['tee']:<4} {entry['kind']:<17} {state:<5} "
            f"next_update={entry['next_update'] or '-'} {entry['size']:>6} B  "
            f"{entry['lookup_key']}  ({entry['source']})"
        )
    if not summaries:
        print("the collateral store is empty")
    return 0
