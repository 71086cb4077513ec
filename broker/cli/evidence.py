"""``keybroker evidence verify``: offline verification with one JSON object on stdout.

The contract (docs/cli.md) is shared by every TEE: exit 0 when verified, 1 when not, 2 for
usage errors or unreadable files; stdout carries exactly
``{"verified", "tee", "signer", "claims", "error"}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from broker.cli import UsageError
from broker.errors import EvidenceError, UnsupportedEvidence
from broker.evidence.claims import Tee
from broker.evidence.registry import CollateralOption, TeeVerifier, parse_tee, verifier_for
from broker.evidence.trust import insecure_root, load_certificates
from broker.timeutil import parse_instant, utcnow

# Union of every TEE's collateral flags, so ``--help`` lists them all; a flag that the chosen
# TEE does not read is a usage error rather than silently ignored.
_KNOWN_OPTIONS: dict[str, CollateralOption] = {}


def _all_collateral_options() -> list[CollateralOption]:
    options: dict[str, CollateralOption] = {}
    for tee in Tee:
        try:
            verifier = verifier_for(tee)
        except UnsupportedEvidence:
            continue
        for option in verifier.collateral_options:
            options.setdefault(option.flag, option)
    return list(options.values())


def register(subparsers: Any) -> None:
    group = subparsers.add_parser("evidence", help="verify TEE evidence offline")
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    verify = actions.add_parser(
        "verify",
        help="verify one piece of evidence and print its claims as JSON",
        description="Verify evidence at an instant; prints one JSON object; exit 0/1/2.",
    )
    verify.add_argument("--tee", required=True, help="snp, tdx, sgx or nitro")
    verify.add_argument("evidence", type=Path, help="evidence file (raw bytes)")
    verify.add_argument("--at", help="verification instant: ISO 8601 or unix seconds (default now)")
    verify.add_argument(
        "--insecure-test-root",
        action="append",
        type=Path,
        default=[],
        metavar="PEM",
        help="also trust this test root (never for production evidence)",
    )
    verify.add_argument(
        "--collateral",
        type=Path,
        metavar="DIR",
        help="read the TEE's collateral from DIR by its conventional file names "
        "(explicit collateral flags take precedence)",
    )
    for option in _all_collateral_options():
        _KNOWN_OPTIONS[option.flag] = option
        verify.add_argument(
            option.flag,
            dest=f"collateral_{option.name}",
            metavar="FILE" if option.is_file else "VALUE",
            type=Path if option.is_file else str,
            help=option.help,
        )
    verify.set_defaults(func=run_verify)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


def _collateral_directory(directory: Path, verifier: TeeVerifier, tee: Tee) -> dict[str, bytes]:
    """Collateral found in ``directory`` under each option's conventional file names."""
    options = [option for option in verifier.collateral_options if option.filenames]
    if not options:
        raise UsageError(f"--collateral does not apply to --tee {tee.value}")
    if not directory.is_dir():
        raise UsageError(f"--collateral {directory} is not a directory")
    found: dict[str, bytes] = {}
    for option in options:
        for filename in option.filenames:
            path = directory / filename
            if path.is_file():
                found[option.name] = _read(path)
                break
    return found


def _instant(text: str | None) -> datetime:
    if text is None:
        return utcnow()
    try:
        return parse_instant(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def run_verify(args: argparse.Namespace) -> int:
    try:
        tee = parse_tee(args.tee)
        verifier = verifier_for(tee)
    except UnsupportedEvidence as exc:
        raise UsageError(exc.detail) from None
    now = _instant(args.at)
    evidence = _read(args.evidence)

    collateral: dict[str, bytes] = {}
    if args.collateral is not None:
        collateral.update(_collateral_directory(args.collateral, verifier, tee))
    for flag, option in _KNOWN_OPTIONS.items():
        value = getattr(args, f"collateral_{option.name}", None)
        if value is None:
            continue
        if option.name not in verifier.collateral_names:
            raise UsageError(f"{flag} does not apply to --tee {tee.value}")
        collateral[option.name] = _read(value) if option.is_file else str(value).encode()

    extra_roots = []
    for index, path in enumerate(args.insecure_test_root):
        for cert in load_certificates(_read(path)):
            extra_roots.append(insecure_root(cert, f"cli-{index}"))

    result: dict[str, Any] = {
        "verified": False,
        "tee": tee.value,
        "signer": None,
        "claims": None,
        "error": None,
    }
    try:
        claims = verifier.verify(evidence, collateral, now=now, extra_roots=extra_roots)
    except EvidenceError as exc:
        result["error"] = {"type": exc.type, "detail": exc.detail}
        _emit(result)
        return 1
    document = claims.document()
    result["verified"] = True
    result["signer"] = document.pop("signer")
    document.pop("tee")
    result["claims"] = document
    if claims.warnings:
        result["warnings"] = list(claims.warnings)
    _emit(result)
    return 0


def _emit(result: dict[str, Any]) -> None:
    json.dump(result, sys.stdout, sort_keys=False)
    sys.stdout.write("\n")
