"""Key custody, policies, audit and admin tokens from the command line.

These commands open the database and the HSM with the broker's own settings and call the
same operations as the admin API (``broker/admin/service.py``), acting with every role; each
action is audited with the local user's name.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from broker import auditlines
from broker.admin.service import (
    AUDIT_DECISIONS,
    AUDIT_PAGE_LIMIT,
    DEFAULT_TOKEN_DAYS,
    IMPORT_KEY_HOURS,
    AdminService,
    AuditQuery,
    WrappedImport,
)
from broker.auditlines import jsonl
from broker.cli import UsageError
from broker.cli.adminrun import admin_command, admin_parser
from broker.cli.common import (
    print_json,
    read_input,
)
from broker.cli.policy import EXIT_ERROR, load_or_report
from broker.cli.tables import Column, add_json_flag, emit, field, fields, table
from broker.roles import Principal, Role
from broker.timeutil import iso, parse_instant, utcnow
from hsm.jwe import Exposure

#: How often `audit tail --follow` asks for new records.
FOLLOW_SECONDS = 1.0

# --- keys --------------------------------------------------------------------------------


def _read_secret(args: argparse.Namespace) -> None:
    """Read ``--secret-file`` or ``--wrapped`` (or take ``--generate``) into ``args`` before
    anything opens."""
    given = [args.secret_file, args.generate, args.wrapped]
    if sum(item is not None for item in given) != 1:
        raise UsageError(
            "give exactly one of --secret-file FILE, --wrapped FILE and --generate LENGTH"
        )
    args.secret = None
    args.wrapped_import = None
    if args.secret_file is not None:
        args.secret = (
            sys.stdin.buffer.read()
            if str(args.secret_file) == "-"
            else read_input(Path(args.secret_file))
        )
    if args.wrapped is not None:
        if args.wrapping_key is None or args.length is None:
            raise UsageError("--wrapped needs --wrapping-key ID and --length BYTES")
        material = read_input(Path(args.wrapped))
        args.wrapped_import = WrappedImport(args.wrapping_key, material, args.length)
    elif args.wrapping_key is not None or args.length is not None:
        raise UsageError("--wrapping-key and --length go with --wrapped FILE")


async def _create(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    created = await admin.create_key(
        who, args.name, args.secret, args.generate, wrapped_import=args.wrapped_import
    )
    print_json(created)
    return 0


async def _rotate(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    added = await admin.create_key(
        who, args.name, args.secret, args.generate, True, wrapped_import=args.wrapped_import
    )
    print_json(added)
    return 0


async def _import_wrapping_key(
    admin: AdminService, who: Principal, args: argparse.Namespace
) -> int:
    made = await admin.make_import_wrapping_key(who, args.valid_hours)
    if args.out is not None:
        await asyncio.to_thread(Path(args.out).write_text, made["public_key"], encoding="ascii")
    print_json(made)
    return 0


async def _disable(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    print_json(await admin.set_key_state(who, args.name, "disabled"))
    return 0


async def _enable(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    print_json(await admin.set_key_state(who, args.name, "active"))
    return 0


async def _set_exposure(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    print_json(await admin.set_exposure(who, args.name, args.exposure))
    return 0


def _kbs_path_given(args: argparse.Namespace) -> None:
    if (args.path is None) == (not args.clear):
        raise UsageError("give exactly one of PATH and --clear")


async def _set_kbs_path(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    print_json(await admin.set_kbs_path(who, args.name, args.path))
    return 0


async def _list_keys(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    emit(args, await admin.list_keys(who), lambda keys: table(keys, KEY_COLUMNS))
    return 0


def _binding(row: Mapping[str, Any]) -> str | None:
    bound = row.get("binding")
    if not bound:
        return None
    version = bound["policy_version"]
    pin = "newest" if version is None else f"v{version}"
    return f"{bound['policy']} ({pin}{', locked' if bound['locked'] else ''})"


KEY_COLUMNS: list[Column] = [
    ("NAME", field("name")),
    ("VERSION", field("version")),
    ("STATE", field("state")),
    ("EXPOSURE", field("exposure")),
    ("POLICY", _binding),
    ("KBS PATH", field("kbs_path")),
    ("DESTROY AFTER", field("destroy_after")),
]
VERSION_COLUMNS: list[Column] = [
    ("VERSION", field("version")),
    ("KEK", field("kek_label")),
    ("BYTES", field("secret_length")),
    ("STATE", field("state")),
    ("CREATED", field("created_at")),
    ("BY", field("created_by")),
]


def _key_text(key: Mapping[str, Any]) -> str:
    deletion = key["deletion"] or {}
    head = fields(
        [
            ("name", key["name"]),
            ("state", key["state"]),
            ("exposure", key["exposure"]),
            ("policy", _binding(key)),
            ("kbs path", key["kbs_path"]),
            ("kms alias", key["kms_alias"]),
            ("deletion scheduled", deletion.get("scheduled_at")),
            ("destroy after", deletion.get("destroy_after")),
            ("destroyed", deletion.get("destroyed_at")),
            ("created", f"{key['created_at']} by {key['created_by']}"),
            ("updated", f"{key['updated_at']} by {key['updated_by']}"),
        ]
    )
    return f"{head}\n\n{table(key['versions'], VERSION_COLUMNS)}"


async def _show_key(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    emit(args, await admin.show_key(who, args.name), _key_text)
    return 0


def deletion_days(text: str) -> int:
    """``--after``: whole days written ``7d`` (or ``7``), as the deletion's waiting period."""
    digits = text[:-1] if text.endswith("d") else text
    if not digits.isascii() or not digits.isdigit() or len(digits) > 3:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days such as 7d")
    return int(digits)


async def _delete(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    print_json(await admin.schedule_deletion(who, args.name, args.after))
    return 0


async def _cancel_deletion(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    print_json(await admin.cancel_deletion(who, args.name))
    return 0


async def _destroy_due(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    print_json({"destroyed": await admin.destroy_due_keys(utcnow())})
    return 0


async def _bind(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    print_json(await admin.bind_policy(who, args.name, args.policy, args.version, args.lock))
    return 0


async def _rotate_kek(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    rotated: dict[str, Any] = dict(await admin.rotate_kek(who))
    if args.rewrap:
        rotated["rewrap"] = await admin.rewrap_keys(who)
    print_json(rotated)
    return 0


async def _rewrap(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    print_json(await admin.rewrap_keys(who))
    return 0


async def _retire_kek(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    print_json(await admin.retire_kek(who, args.version))
    return 0


KEK_COLUMNS: list[Column] = [
    ("LABEL", field("label")),
    ("VERSION", field("version")),
    ("KEY VERSIONS", field("key_versions")),
    ("ACCESS KEYS", field("access_keys")),
    ("CURRENT", lambda row: row["current"]),
]


def _kek_text(status: Mapping[str, Any]) -> str:
    rows = [{**kek, "current": kek["label"] == status["current"]} for kek in status["keks"]]
    text = table(rows, KEK_COLUMNS)
    for label, count in status["missing"].items():
        text += f"\n{count} key versions are sealed under {label}, which the token lacks"
    return text


async def _kek_status(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    emit(args, await admin.kek_status(who), _kek_text)
    return 0


# --- policies ----------------------------------------------------------------------------


async def _publish(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    print_json(await admin.publish_policy(who, args.policy))
    return 0


def _run_publish(args: argparse.Namespace) -> int:
    """Load the policy before the database and HSM are opened: an invalid document exits 2
    with every problem, as ``policy check`` does."""
    args.policy = load_or_report(args.file)  # shared reference files resolve next to it
    if args.policy is None:
        return EXIT_ERROR
    return admin_command(_publish)(args)


POLICY_COLUMNS: list[Column] = [
    ("NAME", field("name")),
    ("VERSION", field("version")),
    ("DIGEST", lambda row: row["digest"][:16]),
    ("CREATED", field("created_at")),
    ("BY", field("created_by")),
]


async def _list_policies(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    emit(args, await admin.list_policies(who), lambda rows: table(rows, POLICY_COLUMNS))
    return 0


def _policy_text(record: Mapping[str, Any]) -> str:
    head = fields(
        [
            ("name", record["name"]),
            ("version", record["version"]),
            ("digest", record["digest"]),
            ("created", f"{record['created_at']} by {record['created_by']}"),
        ]
    )
    return f"{head}\n\n{json.dumps(record['document'], indent=2, sort_keys=True)}"


async def _show_policy(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    record = await admin.get_policy(who, args.name, args.version)
    record["document"] = json.loads(record["document"])
    emit(args, record, _policy_text)
    return 0


# --- audit -------------------------------------------------------------------------------


async def _audit_verify(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    report = await admin.audit_verify(who, args.since)
    scope = "" if args.since is None else f" since {iso(args.since)}"
    if report.ok:
        print(f"audit chain intact{scope}: {report.records} records")
        return 0
    print(
        f"audit chain BROKEN at record {report.first_bad_seq}: {report.reason} "
        f"({report.records} {'record' if report.records == 1 else 'records'} verified before it)"
    )
    return 1


def _audit_query(args: argparse.Namespace, after: int = 0) -> AuditQuery:
    return AuditQuery(
        key=args.key,
        decision=args.outcome,
        kind=args.kind,
        actor=args.actor,
        request_id=args.request_id,
        since=args.since,
        until=args.until,
        after=after,
    )


def _print_records(records: list[dict[str, Any]], as_json: bool) -> None:
    for entry in records:
        print(jsonl(entry) if as_json else describe_audit(entry), flush=True)


async def _audit_tail(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    """The newest records, oldest first; with ``--follow``, then every new one as it is
    written (polled each second) until interrupted."""
    newest = await admin.audit_records(who, _audit_query(args), args.limit, newest_first=True)
    records = list(reversed(newest))
    if args.json and not args.follow:
        print_json(records)
        return 0
    _print_records(records, args.json)
    if not args.follow:
        return 0
    last = records[-1]["seq"] if records else await _head_seq(admin, who)
    while True:
        await asyncio.sleep(FOLLOW_SECONDS)
        fresh = await admin.audit_records(
            who, _audit_query(args, last), AUDIT_PAGE_LIMIT, newest_first=False
        )
        _print_records(fresh, args.json)
        if fresh:
            last = fresh[-1]["seq"]


async def _head_seq(admin: AdminService, who: Principal) -> int:
    """The newest record's sequence number, 0 when there is none."""
    newest = await admin.audit_records(who, AuditQuery(), 1, newest_first=True)
    return int(newest[0]["seq"]) if newest else 0


async def _audit_export(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    """Every record the filters pick, in sequence order, one line each."""
    after, written = 0, 0
    out = sys.stdout if args.out is None else await asyncio.to_thread(_open_private, args.out)
    try:
        while True:
            page = await admin.audit_records(
                who, _audit_query(args, after), AUDIT_PAGE_LIMIT, newest_first=False
            )
            if not page:
                break
            out.write("".join(auditlines.line(entry, args.format) + "\n" for entry in page))
            written += len(page)
            after = page[-1]["seq"]
    finally:
        if out is not sys.stdout:
            out.close()
    print(f"exported {written} records", file=sys.stderr)
    return 0


def _open_private(path: Path) -> TextIO:
    """``path`` for writing, readable by its owner only: records name keys and actors."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    return os.fdopen(descriptor, "w", encoding="utf-8")


def _instant(text: str) -> datetime:
    try:
        return parse_instant(text)
    except (ValueError, OverflowError, OSError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def describe_audit(entry: dict[str, Any]) -> str:
    """One readable line per decision, then its reasons indented."""
    record = entry["record"]
    about = entry["key_name"] or record.get("tee") or record.get("source")
    subject = " ".join(part for part in (record.get("action"), about) if part)
    head = (
        f"#{entry['seq']:<6} {entry['at'][:19]}  {entry['kind']:<7} {entry['decision']:<5} "
        f"{subject}"
    )
    extras = []
    if record.get("tee"):
        extras.append(f"tee={record['tee']}")
    if record.get("flow"):
        extras.append(f"flow={record['flow']}")
    if record.get("key"):
        extras.append(f"version={record['key']['version']}")
    if record.get("policy"):
        policy = record["policy"]
        extras.append(f"policy={policy['name']}@v{policy['version']}")
    if record.get("actor"):
        extras.append(f"actor={record['actor']}")
    if record.get("tee_pubkey_thumbprint"):
        extras.append(f"tee_key={record['tee_pubkey_thumbprint'][:12]}")
    if record.get("kbs_path"):
        extras.append(f"kbs={record['kbs_path']}")
    if record.get("plaintext_in_broker"):
        extras.append("plaintext_in_broker")
    lines = [head + ("  " + " ".join(extras) if extras else "")]
    if record.get("error"):
        lines.append(f"        {record['error']['type']}: {record['error']['detail']}")
    for reason in record.get("reasons", []):
        lines.append("        FAIL " + describe_reason(reason))
    for endpoint, counts in record.get("requests", {}).items():  # kind unauthenticated
        counted = ", ".join(f"{reason} x{number}" for reason, number in counts.items())
        lines.append(f"        {endpoint}: {counted}")
    return "\n".join(lines)


def describe_reason(reason: dict[str, Any]) -> str:
    """``minimum_tcb: reported_tcb.snp >= 9, found 5`` from a failed clause's JSON."""
    claim = reason.get("claim") or reason.get("rule", "")
    text = f"{reason.get('kind', 'clause')}: {claim} {reason.get('op', '')} "
    text += f"{json.dumps(reason.get('expected'))}, found {json.dumps(reason.get('found'))}"
    if reason.get("reason"):
        text += f" ({reason['reason']})"
    return text


# --- admin tokens ------------------------------------------------------------------------


async def _token_create(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    created = await admin.create_token(who, args.name, Role(args.role), args.expires_in_days)
    print(f"created {created['role']} token {created['id']} for {created['name']}", file=sys.stderr)
    print("store it now; it is not shown again:", file=sys.stderr)
    print(created["token"])
    return 0


async def _token_rotate(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    rotated = await admin.rotate_token(who, args.token_id, args.expires_in_days)
    print(
        f"token {rotated['replaces']} revoked; its replacement {rotated['id']} "
        f"({rotated['role']}, {rotated['name']}) expires {rotated['expires_at']}",
        file=sys.stderr,
    )
    print("store it now; it is not shown again:", file=sys.stderr)
    print(rotated["token"])
    return 0


async def _whoami(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    emit(args, await admin.whoami(who), lambda me: fields(list(me.items())))
    return 0


TOKEN_COLUMNS: list[Column] = [
    ("ID", field("id")),
    ("NAME", field("name")),
    ("ROLE", field("role")),
    ("CREATED", field("created_at")),
    ("EXPIRES", field("expires_at")),
    ("REVOKED", field("revoked_at")),
    ("REPLACED BY", field("replaced_by")),
]


async def _token_list(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    emit(args, await admin.list_tokens(who), lambda rows: table(rows, TOKEN_COLUMNS))
    return 0


async def _token_revoke(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    print_json(await admin.revoke_token(who, args.token_id))
    return 0


async def _access_key_create(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    created = await admin.create_access_key(who, args.name)
    key_id, name = created["access_key_id"], created["name"]
    print(f"created KMS access key {key_id} for {name}", file=sys.stderr)
    print("store the secret now; it is not shown again:", file=sys.stderr)
    print(json.dumps({"access_key_id": key_id, "secret_access_key": created["secret_access_key"]}))
    return 0


ACCESS_KEY_COLUMNS: list[Column] = [
    ("ID", field("access_key_id")),
    ("NAME", field("name")),
    ("CREATED", field("created_at")),
    ("BY", field("created_by")),
    ("REVOKED", field("revoked_at")),
]


async def _access_key_list(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    emit(args, await admin.list_access_keys(who), lambda rows: table(rows, ACCESS_KEY_COLUMNS))
    return 0


async def _access_key_revoke(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    print_json(await admin.revoke_access_key(who, args.access_key_id))
    return 0


def _register_import_wrapping_key(actions: Any) -> None:
    parser = admin_parser(
        actions,
        "import-wrapping-key",
        "an HSM-held RSA key to wrap key material to for `keys create --wrapped`",
        _import_wrapping_key,
    )
    parser.add_argument("--valid-hours", type=int, default=IMPORT_KEY_HOURS, metavar="HOURS")
    parser.add_argument("--out", metavar="PEM", help="also write its public key to this file")


def _register_key_lifecycle(actions: Any) -> None:
    """``keys show``, and scheduled deletion: ``delete``, ``cancel-deletion``, ``destroy-due``."""
    show = admin_parser(actions, "show", "a key: versions, KEKs, binding, deletion", _show_key)
    show.add_argument("name")
    add_json_flag(show)
    delete = admin_parser(
        actions,
        "delete",
        "schedule the key's destruction; it is unusable from now on (docs/operations.md)",
        _delete,
    )
    delete.add_argument("name")
    delete.add_argument(
        "--after",
        type=deletion_days,
        required=True,
        metavar="DAYS",
        help="destroy its sealed blobs after 7d to 30d, unless cancelled",
    )
    admin_parser(
        actions,
        "cancel-deletion",
        "cancel a scheduled deletion; the key gets back its former state",
        _cancel_deletion,
    ).add_argument("name")
    admin_parser(
        actions,
        "destroy-due",
        "destroy now the keys whose deletion is due (brokers do it every minute)",
        _destroy_due,
    )


def _register_kek(subparsers: Any) -> None:
    """``kek rotate [--rewrap]``, ``rewrap``, ``retire VERSION``, ``status``."""
    kek = subparsers.add_parser("kek", help="key-encryption keys in the HSM")
    kek_actions = kek.add_subparsers(dest="action", required=True, metavar="ACTION")
    rotate = admin_parser(kek_actions, "rotate", "create the next KEK version", _rotate_kek)
    rotate.add_argument(
        "--rewrap",
        action="store_true",
        help="then re-seal every key version under it, inside the HSM",
    )
    admin_parser(
        kek_actions,
        "rewrap",
        "re-seal every key version not under the newest KEK under it (resumes an interrupted one)",
        _rewrap,
    )
    retire = admin_parser(
        kek_actions, "retire", "destroy an old KEK that no key version is sealed under", _retire_kek
    )
    retire.add_argument("version", type=int)
    add_json_flag(
        admin_parser(
            kek_actions,
            "status",
            "each KEK and how many key versions and KMS access keys it seals",
            _kek_status,
        )
    )


def _audit_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--key", help="records of this key")
    parser.add_argument("--outcome", choices=AUDIT_DECISIONS, help="this decision")
    parser.add_argument("--kind", help="attest, release, admin, unauthenticated...")
    parser.add_argument("--actor", help="actions of token:<id>:<name> or cli:<user>")
    parser.add_argument("--request-id", help="the records of one request")
    parser.add_argument("--since", type=_instant, help="written at or after (ISO 8601, unix s)")
    parser.add_argument("--until", type=_instant, help="written before (ISO 8601, unix s)")


def _register_audit(subparsers: Any) -> None:
    """``audit verify [--since]``, ``tail [filters] [--follow]``, ``export``."""
    audit = subparsers.add_parser("audit", help="the audit trail (auditors)")
    audit_actions = audit.add_subparsers(dest="action", required=True, metavar="ACTION")
    verify = admin_parser(
        audit_actions, "verify", "check the hash chain; exit 1 if broken", _audit_verify
    )
    verify.add_argument(
        "--since", type=_instant, help="only from the first record written at or after this"
    )
    tail = admin_parser(audit_actions, "tail", "show recent decisions", _audit_tail)
    tail.add_argument("-n", "--limit", type=int, default=20)
    tail.add_argument("--json", action="store_true", help="JSON (one object a line with --follow)")
    tail.add_argument("-f", "--follow", action="store_true", help="then print new records")
    _audit_filters(tail)
    export = admin_parser(
        audit_actions, "export", "every record picked, one line each", _audit_export
    )
    export.add_argument("--format", choices=auditlines.FORMATS, default="jsonl")
    export.add_argument("--out", type=Path, help="write here (mode 0600) instead of stdout")
    _audit_filters(export)


def register(subparsers: Any) -> None:
    keys = subparsers.add_parser("keys", help="customer keys (key custodians)")
    actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, action, text in (
        ("create", _create, "import a secret (sealed at once) or generate one in the HSM"),
        ("rotate", _rotate, "add a new version of a key"),
    ):
        parser = admin_parser(actions, name, text, action, _read_secret)
        parser.add_argument("name")
        parser.add_argument("--secret-file", help="file with the secret bytes ('-' for stdin)")
        parser.add_argument(
            "--wrapped",
            metavar="FILE",
            help="key material wrapped to an import wrapping key (CKM_RSA_AES_KEY_WRAP layout; "
            "docs/operations.md): unwrapped inside the HSM",
        )
        parser.add_argument("--wrapping-key", metavar="ID", help="the wrapping key --wrapped used")
        parser.add_argument(
            "--length", type=int, metavar="BYTES", help="the length of the secret in --wrapped"
        )
        parser.add_argument(
            "--generate",
            type=int,
            metavar="LENGTH",
            help="generate LENGTH random bytes inside the HSM",
        )
    for name, action, text in (
        ("disable", _disable, "refuse releases"),
        ("enable", _enable, "allow releases again"),
    ):
        admin_parser(actions, name, text, action).add_argument("name")
    add_json_flag(admin_parser(actions, "list", "list keys (newest version of each)", _list_keys))
    _register_key_lifecycle(actions)
    _register_import_wrapping_key(actions)
    exposure = admin_parser(
        actions,
        "set-exposure",
        "where the secret may be while released: hsm-only, or broker-memory (KBS answers)",
        _set_exposure,
    )
    exposure.add_argument("name")
    exposure.add_argument("exposure", choices=[e.value for e in Exposure])
    kbs_path = admin_parser(
        actions,
        "set-kbs-path",
        "the KBS resource path repository/type/tag the key answers at (docs/kbs.md)",
        _set_kbs_path,
        _kbs_path_given,
    )
    kbs_path.add_argument("name")
    kbs_path.add_argument("path", nargs="?", help="repository/type/tag, e.g. default/key/disk-key")
    kbs_path.add_argument("--clear", action="store_true", help="the key answers at no KBS path")
    bind = admin_parser(actions, "bind", "bind a key to a release policy (policy authors)", _bind)
    bind.add_argument("name")
    bind.add_argument("--policy", required=True)
    bind.add_argument("--version", type=int, help="pin a policy version (default: newest)")
    bind.add_argument("--lock", action="store_true", help="refuse any later change of binding")

    _register_kek(subparsers)

    policies = subparsers.add_parser("policies", help="published release policies")
    policy_actions = policies.add_subparsers(dest="action", required=True, metavar="ACTION")
    publish = admin_parser(
        policy_actions, "publish", "publish a policy file as a new version", _publish
    )
    publish.add_argument("file", type=Path)
    publish.set_defaults(func=_run_publish)
    add_json_flag(
        admin_parser(
            policy_actions, "list", "list policies (newest version of each)", _list_policies
        )
    )
    show = admin_parser(policy_actions, "show", "print a published policy", _show_policy)
    add_json_flag(show)
    show.add_argument("name")
    show.add_argument("--version", type=int)

    _register_audit(subparsers)

    admin = subparsers.add_parser("admin", help="admin API tokens and KMS access keys")
    admin_actions = admin.add_subparsers(dest="area", required=True, metavar="AREA")
    _register_tokens(admin_actions)
    add_json_flag(admin_parser(admin_actions, "whoami", "who the command acts as", _whoami))
    _register_access_keys(admin_actions)


def _register_tokens(admin_actions: Any) -> None:
    token = admin_actions.add_parser("token", help="bearer tokens of the admin API")
    token_actions = token.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = admin_parser(token_actions, "create", "create a token; prints it once", _token_create)
    create.add_argument("--role", required=True, choices=[role.value for role in Role])
    create.add_argument("--name", required=True, help="who or what will use it")
    create.add_argument(
        "--expires-in-days", type=int, default=DEFAULT_TOKEN_DAYS, metavar="DAYS", help="1-365"
    )
    rotate = admin_parser(
        token_actions, "rotate", "replace a token by a new one; prints it once", _token_rotate
    )
    rotate.add_argument("token_id")
    rotate.add_argument(
        "--expires-in-days", type=int, default=DEFAULT_TOKEN_DAYS, metavar="DAYS", help="1-365"
    )
    add_json_flag(
        admin_parser(token_actions, "list", "list tokens (never their secrets)", _token_list)
    )
    admin_parser(token_actions, "revoke", "revoke a token", _token_revoke).add_argument("token_id")


def _register_access_keys(admin_actions: Any) -> None:
    access_key = admin_actions.add_parser(
        "access-key", help="access keys that sign KMS requests (AWS SigV4, docs/kms.md)"
    )
    actions = access_key.add_subparsers(dest="action", required=True, metavar="ACTION")
    admin_parser(
        actions,
        "create",
        "create an access key; prints {access_key_id, secret_access_key} once",
        _access_key_create,
    ).add_argument("--name", required=True, help="who or what will sign with it")
    add_json_flag(
        admin_parser(actions, "list", "list access keys (never their secrets)", _access_key_list)
    )
    revoke = admin_parser(actions, "revoke", "revoke an access key", _access_key_revoke)
    revoke.add_argument("access_key_id")
