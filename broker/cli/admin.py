"""Key custody, policies, audit and admin tokens from the command line.

These commands open the database and the HSM with the broker's own settings and call the
same operations as the admin API (``broker/admin/service.py``), acting with every role; each
action is audited with the local user's name.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from broker.admin.service import AdminService
from broker.cli import UsageError
from broker.cli.adminrun import admin_command, admin_parser
from broker.cli.common import print_json, read_input
from broker.cli.policy import EXIT_ERROR, load_or_report
from broker.roles import Principal, Role
from hsm.jwe import Exposure

# --- keys --------------------------------------------------------------------------------


def _read_secret(args: argparse.Namespace) -> None:
    """Read ``--secret-file`` (or take ``--generate``) into ``args`` before anything opens."""
    if (args.secret_file is None) == (args.generate is None):
        raise UsageError("give exactly one of --secret-file FILE and --generate LENGTH")
    args.secret = None
    if args.secret_file is not None:
        args.secret = (
            sys.stdin.buffer.read()
            if str(args.secret_file) == "-"
            else read_input(Path(args.secret_file))
        )


async def _create(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    print_json(await admin.create_key(who, args.name, args.secret, args.generate))
    return 0


async def _rotate(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    print_json(await admin.create_key(who, args.name, args.secret, args.generate, new_version=True))
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
    print_json(await admin.list_keys(who))
    return 0


async def _bind(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    print_json(await admin.bind_policy(who, args.name, args.policy, args.version, args.lock))
    return 0


async def _rotate_kek(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    print_json(await admin.rotate_kek(who))
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


async def _list_policies(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    print_json(await admin.list_policies(who))
    return 0


async def _show_policy(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    record = await admin.get_policy(who, args.name, args.version)
    record["document"] = json.loads(record["document"])
    print_json(record)
    return 0


# --- audit -------------------------------------------------------------------------------


async def _audit_verify(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    report = await admin.audit_verify(who)
    if report.ok:
        print(f"audit chain intact: {report.records} records")
        return 0
    print(
        f"audit chain BROKEN at record {report.first_bad_seq}: {report.reason} "
        f"({report.records} {'record' if report.records == 1 else 'records'} verified before it)"
    )
    return 1


async def _audit_tail(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    records = list(reversed(await admin.audit_tail(who, args.limit)))
    if args.json:
        print_json(records)
        return 0
    for entry in records:
        print(describe_audit(entry))
    return 0


def describe_audit(entry: dict[str, Any]) -> str:
    """One readable line per decision, then its reasons indented."""
    record = json.loads(entry["record"])
    about = entry["key_name"] or record.get("tee") or record.get("source")
    subject = " ".join(part for part in (record.get("action"), about) if part)
    head = (
        f"#{entry['seq']:<6} {entry['at'][:19]}  {entry['kind']:<7} {entry['decision']:<5} "
        f"{subject}"
    )
    extras = []
    if record.get("tee"):
        extras.append(f"tee={record['tee']}")
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
    created = await admin.create_token(who, args.name, Role(args.role))
    print(f"created {created['role']} token {created['id']} for {created['name']}", file=sys.stderr)
    print("store it now; it is not shown again:", file=sys.stderr)
    print(created["token"])
    return 0


async def _token_list(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    print_json(await admin.list_tokens(who))
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


async def _access_key_list(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    print_json(await admin.list_access_keys(who))
    return 0


async def _access_key_revoke(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    print_json(await admin.revoke_access_key(who, args.access_key_id))
    return 0


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
    admin_parser(actions, "list", "list keys (newest version of each)", _list_keys)
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

    kek = subparsers.add_parser("kek", help="key-encryption keys in the HSM")
    kek_actions = kek.add_subparsers(dest="action", required=True, metavar="ACTION")
    admin_parser(kek_actions, "rotate", "create the next KEK version", _rotate_kek)

    policies = subparsers.add_parser("policies", help="published release policies")
    policy_actions = policies.add_subparsers(dest="action", required=True, metavar="ACTION")
    publish = admin_parser(
        policy_actions, "publish", "publish a policy file as a new version", _publish
    )
    publish.add_argument("file", type=Path)
    publish.set_defaults(func=_run_publish)
    admin_parser(policy_actions, "list", "list policies (newest version of each)", _list_policies)
    show = admin_parser(policy_actions, "show", "print a published policy", _show_policy)
    show.add_argument("name")
    show.add_argument("--version", type=int)

    audit = subparsers.add_parser("audit", help="the audit trail (auditors)")
    audit_actions = audit.add_subparsers(dest="action", required=True, metavar="ACTION")
    admin_parser(audit_actions, "verify", "check the hash chain; exit 1 if broken", _audit_verify)
    tail = admin_parser(audit_actions, "tail", "show recent decisions", _audit_tail)
    tail.add_argument("-n", "--limit", type=int, default=20)
    tail.add_argument("--json", action="store_true")

    admin = subparsers.add_parser("admin", help="admin API tokens and KMS access keys")
    admin_actions = admin.add_subparsers(dest="area", required=True, metavar="AREA")
    token = admin_actions.add_parser("token", help="bearer tokens of the admin API")
    token_actions = token.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = admin_parser(token_actions, "create", "create a token; prints it once", _token_create)
    create.add_argument("--role", required=True, choices=[role.value for role in Role])
    create.add_argument("--name", required=True, help="who or what will use it")
    admin_parser(token_actions, "list", "list tokens (never their secrets)", _token_list)
    admin_parser(token_actions, "revoke", "revoke a token", _token_revoke).add_argument("token_id")
    _register_access_keys(admin_actions)


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
    admin_parser(actions, "list", "list access keys (never their secrets)", _access_key_list)
    revoke = admin_parser(actions, "revoke", "revoke an access key", _access_key_revoke)
    revoke.add_argument("access_key_id")
