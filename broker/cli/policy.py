"""``keybroker policy check`` and ``keybroker policy eval``: author and dry-run policies.

``check FILE...`` validates each policy (or reference file) against the schema and lints it.
Exit status: 0 clean, 1 warnings only (acknowledged warnings do not count), 2 errors.

``eval FILE (--claims JSON | --tee TEE EVIDENCE [collateral]) [--at TIME] [--json]`` prints
the decision and every clause's outcome. Exit status: 0 allow, 1 deny (including evidence
that does not verify), 2 usage or policy errors.

``replay DRAFT [--key K] [--since 30d] [--json]`` decides the releases of the last 30 days
again with the draft, from the claims the audit trail keeps, and reports what would change.
``diff NAME V1 V2 [--json]`` shows what changed in meaning between two published versions.
Both read the broker's database (its settings, as ``keybroker policies`` does).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from broker.admin.service import DEFAULT_REPLAY_WINDOW, AdminService
from broker.cli import UsageError
from broker.cli.adminrun import admin_command, admin_parser
from broker.cli.common import print_json, read_input
from broker.cli.evidence import (
    add_verification_arguments,
    instant,
    verifier_or_usage,
    verify_evidence,
)
from broker.errors import EvidenceError, PolicyError
from broker.evidence.claims import Claims, Signer, Tee, thaw
from broker.policy.evaluate import ABSENT, ClauseResult, Decision, describe, evaluate
from broker.policy.lint import LintWarning, lint
from broker.policy.loader import Document, load_policy, read_document
from broker.policy.model import Policy
from broker.roles import Principal
from broker.timeutil import iso

EXIT_OK, EXIT_WARN_OR_DENY, EXIT_ERROR = 0, 1, 2

_CHECK_EPILOG = """exit status: 0 every file is valid and has no warnings (acknowledged warnings
do not count); 1 valid, but some file has warnings; 2 some file is invalid or unreadable.
Warning codes: no-measurement, debug-allowed, infrastructure-signer, no-minimum-tcb,
any-tee, unknown-claim, test-root-accepted, instance-unidentified, limits-redundant
(docs/policies.md); debug-allowed and test-root-accepted cannot be acknowledged.
no-provenance (docs/reference-values.md): a reference entry records no provenance; every
entry's provenance is listed."""

_EVAL_EPILOG = """exit status: 0 the policy allows; 1 it denies (or the evidence does not
verify); 2 usage error, unreadable input or invalid policy. --claims takes the JSON that
`keybroker evidence verify` prints, or a Claims.to_json() document (which also carries the
evidence and collateral times that freshness rules need). --at is the instant of both
verification and evaluation."""


def register(subparsers: Any) -> None:
    group = subparsers.add_parser("policy", help="check and dry-run release policies")
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")

    check = actions.add_parser(
        "check",
        help="validate policies against the schema and warn about risky ones",
        description="Validate policy and reference files and lint the policies.",
        epilog=_CHECK_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keep the codes whole
    )
    check.add_argument(
        "files", nargs="+", type=Path, metavar="FILE", help="policy or reference-value file"
    )
    check.set_defaults(func=run_check)

    evaluate_ = actions.add_parser(
        "eval",
        help="evaluate a policy against claims or evidence and explain the decision",
        description="Dry-run a policy: print the decision and every clause's outcome.",
        epilog=_EVAL_EPILOG,
    )
    evaluate_.add_argument("policy", type=Path, metavar="FILE", help="the policy to evaluate")
    source = evaluate_.add_mutually_exclusive_group(required=True)
    source.add_argument("--claims", type=Path, metavar="CLAIMS.json", help="claims as JSON")
    source.add_argument(
        "--tee",
        nargs=2,
        metavar=("TEE", "EVIDENCE"),
        help="verify this evidence (snp, tdx, sgx or nitro) with the collateral flags below",
    )
    evaluate_.add_argument("--json", action="store_true", help="print one JSON object")
    add_verification_arguments(evaluate_)
    evaluate_.set_defaults(func=run_eval)

    replay = admin_parser(
        actions,
        "replay",
        "decide past releases again with a draft policy and show what would change",
        _replay,
    )
    replay.add_argument("draft", type=Path, metavar="DRAFT", help="the draft policy file")
    replay.add_argument(
        "--key",
        help="only the releases of this key (default: every key "
        "whose releases a policy of the draft's name decided)",
    )
    replay.add_argument(
        "--since",
        default=DEFAULT_REPLAY_WINDOW,
        help="how far back: a number and s, m, h or d (default: %(default)s)",
    )
    replay.add_argument("--json", action="store_true", help="print the report as JSON")
    replay.set_defaults(func=_run_replay)

    difference = admin_parser(
        actions, "diff", "what changed in meaning between two published versions", _diff
    )
    difference.add_argument("name", help="the policy's name")
    difference.add_argument("old", type=int, metavar="V1", help="the older version")
    difference.add_argument("new", type=int, metavar="V2", help="the newer version")
    difference.add_argument("--json", action="store_true", help="print the difference as JSON")


# --- replay and diff --------------------------------------------------------------------------


def _run_replay(args: argparse.Namespace) -> int:
    """Load the draft before the database and HSM are opened: an invalid draft exits 2 with
    every problem, as ``check`` does."""
    args.policy = load_or_report(args.draft)
    if args.policy is None:
        return EXIT_ERROR
    return admin_command(_replay)(args)


async def _replay(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    report = await admin.replay_policy(who, args.policy, args.key, args.since)
    if args.json:
        print_json(report)
    else:
        print_replay(report)
    return EXIT_OK


def print_replay(report: Mapping[str, Any]) -> None:
    draft = report["draft"]
    scope = f"key {report['key']}" if report["key"] else f"keys decided by {draft['name']}"
    print(
        f"draft {draft['name']} v{draft['version']} over the releases of {scope} since "
        f"{report['since']}: {report['releases_replayed']} decided again "
        f"({report['records_read']} records read)"
    )
    unchanged = report["unchanged"]
    print(f"  unchanged: {unchanged['allow']} allowed, {unchanged['deny']} denied")
    for title, key in (
        ("would now be denied", "newly_denied"),
        ("would now be allowed", "newly_allowed"),
    ):
        change = report[key]
        print(f"  {title}: {change['total']}")
        for group in change["by_clause"]:
            samples = ", ".join(group["sample_request_ids"])
            print(f"    {group['count']:>7}  {group['rule']}  e.g. {samples}")
    for why, count in report["skipped"].items():
        print(f"  skipped: {count} {why}")


async def _diff(admin: AdminService, who: Principal, args: argparse.Namespace) -> int:
    result = await admin.diff_policy(who, args.name, args.old, args.new)
    if args.json:
        print_json(result)
        return EXIT_OK
    counts = ", ".join(f"{count} {kind}" for kind, count in result["summary"].items() if count)
    versions = f"v{result['from']['version']} -> v{result['to']['version']}"
    print(f"policy {result['name']} {versions}: {counts or 'no difference in meaning'}")
    for difference in result["differences"]:
        print(f"  {difference['change']:<9} {difference['rule']}  {difference['detail']}")
    return EXIT_OK


# --- check ----------------------------------------------------------------------------------


def run_check(args: argparse.Namespace) -> int:
    status = EXIT_OK
    for path in args.files:
        try:
            document = read_document(path)
        except PolicyError as exc:
            print(f"{path}: invalid, {_count(len(exc.problems), 'error')}")
            for problem in exc.problems:
                print(f"  {_problem_line(problem)}")
            status = EXIT_ERROR
            continue
        status = max(status, _report_document(path, document))
    return status


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _problem_line(problem: Mapping[str, Any]) -> str:
    where = problem["file"]
    if problem.get("line") is not None:
        where += f":{problem['line']}:{problem['column']}"
    return f"{where}: error: {problem['path']}: {problem['message']}"


def _report_document(path: Path, document: Document) -> int:
    policy = document.policy
    origins = _reference_lines(path, document)
    unproven = sum(1 for line in origins if "warning[no-provenance]" in line)
    if policy is None:
        names = ", ".join(document.reference_sets)
        summary = _count(unproven, "warning") if unproven else "ok"
        print(f"{path}: {summary} (reference file: {names})")
        for line in origins:
            print(f"  {line}")
        return EXIT_WARN_OR_DENY if unproven else EXIT_OK
    warnings = lint(policy)
    open_warnings = len([w for w in warnings if w.acknowledged is None]) + unproven
    summary = _count(open_warnings, "warning") if open_warnings else "ok"
    print(f"{path}: {summary} (policy {policy.name} v{policy.version}, sha256:{policy.digest()})")
    for warning in warnings:
        print(f"  {_warning_line(path, document, warning)}")
    for signed in policy.signed_references:
        print(f"  signed: {signed.file} by {signed.signer}")
    for line in origins:
        print(f"  {line}")
    return EXIT_WARN_OR_DENY if open_warnings else EXIT_OK


def _reference_lines(path: Path, document: Document) -> list[str]:
    """Where each trusted value came from, one line per reference entry; an entry without
    provenance is a ``no-provenance`` warning (docs/reference-values.md)."""
    lines: list[str] = []
    for ref in document.reference_sets.values():
        for number, entry in enumerate(ref.entries, start=1):
            name = f"{ref.name}[{number}]" + (f" ({entry.label})" if entry.label else "")
            if entry.provenance is not None:
                lines.append(f"provenance {name}: {entry.provenance.summary()}")
                continue
            location = ("reference_values", ref.name, "values", number - 1)
            line = document.where.line_of(location) if ref.source == str(path) else None
            where = f"{ref.source}:{line}" if line is not None else str(ref.source or path)
            lines.append(
                f"{where}: warning[no-provenance] {name}: nothing records where these values "
                "came from; add provenance (keybroker reference compute writes it)"
            )
    return lines


def _warning_line(path: Path, document: Document, warning: LintWarning) -> str:
    line = document.where.line_of(warning.location)
    where = f"{path}:{line}" if line is not None else str(path)
    label = "acknowledged" if warning.acknowledged is not None else "warning"
    text = f"{where}: {label}[{warning.code}] {warning.rule}: {warning.message}"
    if warning.acknowledged is not None:
        text += f" (acknowledged: {warning.acknowledged})"
    return text


# --- eval -----------------------------------------------------------------------------------


def load_or_report(path: Path) -> Policy | None:
    """The policy at ``path``, or None after printing each problem to stderr (then exit
    :data:`EXIT_ERROR`, as ``policy check`` does for an invalid file)."""
    try:
        return load_policy(path)
    except PolicyError as exc:
        for problem in exc.problems:
            print(f"keybroker: {_problem_line(problem)}", file=sys.stderr)
        return None


def run_eval(args: argparse.Namespace) -> int:
    policy = load_or_report(args.policy)
    if policy is None:
        return EXIT_ERROR
    now = instant(args.at)
    try:
        claims = _claims(args, now)
    except EvidenceError as exc:
        _print_unverified(args, policy, now, exc.type, exc.detail)
        return EXIT_WARN_OR_DENY
    except NotVerified as exc:
        _print_unverified(args, policy, now, exc.kind, exc.detail)
        return EXIT_WARN_OR_DENY
    decision = evaluate(policy, claims, now)
    if args.json:
        json.dump({**decision.to_json(), "error": None}, sys.stdout)
        sys.stdout.write("\n")
    else:
        _print_decision(args.policy, decision, claims)
        if policy.limits is not None:
            print(
                "limits: not evaluated here (they count the key's past releases); "
                "`keybroker policy replay` counts them over the audit trail"
            )
    return EXIT_OK if decision.allow else EXIT_WARN_OR_DENY


def _claims(args: argparse.Namespace, now: datetime) -> Claims:
    if args.tee is not None:
        tee, evidence = args.tee
        return verify_evidence(args, verifier_or_usage(tee), Path(evidence), now)
    try:
        doc = json.loads(read_input(args.claims))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{args.claims}: not JSON: {exc}") from None
    return claims_from_json(doc, str(args.claims))


class NotVerified(Exception):
    """``--claims`` holds an ``evidence verify`` result that did not verify."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


def claims_from_json(doc: Any, source: str = "claims") -> Claims:
    """Claims from ``evidence verify`` output or a ``Claims.to_json()`` document."""
    if not isinstance(doc, dict):
        raise UsageError(f"{source}: expected a JSON object")
    try:
        if "fields" in doc:
            return Claims.from_json(doc)
        if "verified" in doc:
            if not doc["verified"]:
                error = doc.get("error") or {}
                raise NotVerified(
                    str(error.get("type", "evidence-error")),
                    str(error.get("detail", "the evidence did not verify")),
                )
            fields = dict(doc["claims"])
            debug = fields.pop("debug")
            return Claims(
                tee=Tee(doc["tee"]),
                signer=Signer.from_json(doc["signer"]),
                debug=bool(debug),
                fields=fields,
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"{source}: not a claims document ({type(exc).__name__}: {exc})") from None
    raise UsageError(
        f"{source}: expected `keybroker evidence verify` output or Claims.to_json() JSON"
    )


def _print_unverified(
    args: argparse.Namespace, policy: Policy, now: datetime, kind: str, detail: str
) -> None:
    if args.json:
        result: dict[str, Any] = {
            "allow": False,
            "policy": {"name": policy.name, "version": policy.version, "sha256": policy.digest()},
            "tee": args.tee[0] if args.tee else None,
            "section": None,
            "at": iso(now),
            "explanation": [],
            "failures": [],
            "error": {"type": kind, "detail": detail},
        }
        json.dump(result, sys.stdout)
        sys.stdout.write("\n")
        return
    print(f"policy    {policy.name} v{policy.version} (sha256:{policy.digest()})")
    print(f"at        {iso(now)}")
    print(f"decision  DENY: the evidence did not verify ({kind}): {detail}")


# --- the human-readable explanation ---------------------------------------------------------

_WIDE = 40


def _print_decision(path: Path, decision: Decision, claims: Claims) -> None:
    signer = claims.signer
    failures = decision.failures
    verdict = (
        "ALLOW: every clause passed"
        if decision.allow
        else f"DENY: {len(failures)} of {len(decision.explanation)} clauses failed"
    )
    print(f"policy    {decision.policy_name} v{decision.policy_version} ({path})")
    print(f"sha256    {decision.policy_digest}")
    print(
        f"evidence  {decision.tee}, signed by {signer.vendor} ({signer.origin.value}, "
        f"root {signer.root}, key {signer.key})"
    )
    print(f"at        {iso(decision.at)}")
    print(f"decision  {verdict}")
    print()
    rows = [("RESULT", "KIND", "CLAIM", "OP", "EXPECTED", "FOUND")]
    rows += [_row(clause, depth) for clause, depth in _flatten(decision.explanation)]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:5], widths, strict=True)]
        print("  ".join([*cells, row[5]]).rstrip())
    if failures:
        print()
        print("Denied because:")
        for number, clause in enumerate(failures, start=1):
            print(f"  {number}. {describe(clause)}")
            print(f"     rule: {clause.rule}")
            if clause.reason:
                print(f"     why:  {clause.reason}")


def _flatten(
    clauses: tuple[ClauseResult, ...], depth: int = 0
) -> Iterator[tuple[ClauseResult, int]]:
    for clause in clauses:
        yield clause, depth
        yield from _flatten(clause.children, depth + 1)


def _row(clause: ClauseResult, depth: int) -> tuple[str, str, str, str, str, str]:
    indent = "  " * depth
    result = "PASS" if clause.passed else "FAIL"
    claim = indent + (clause.claim or clause.op)
    op = "" if not clause.claim else clause.op
    if clause.absent and clause.found is None and clause.claim:
        found = ABSENT
    elif not clause.claim:
        found = clause.note or ""
    else:
        found = _cell(clause.found)
        if clause.note and (clause.passed or depth > 0):  # top-level failures: see below
            found += f"  ({clause.note})"
    expected = "" if not clause.claim else _cell(clause.expected)
    return result, clause.kind, claim, op, expected, found


def _cell(value: Any) -> str:
    value = thaw(value)
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    elif isinstance(value, list):
        text = ", ".join(_cell(v) for v in value) or "(none)"
    elif isinstance(value, dict):
        text = ", ".join(f"{k}={_cell(v)}" for k, v in value.items())
    else:
        text = str(value)
    if len(text) > _WIDE:
        return text[:24] + "…" + text[-12:]
    return text
