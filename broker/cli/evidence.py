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
from broker.cli.common import read_input
from broker.errors import FORMER_TYPES, EvidenceError, UnsupportedEvidence
from broker.evidence import sniff, trustee
from broker.evidence.claims import Claims, Tee
from broker.evidence.registry import CollateralOption, TeeVerifier, parse_tee, verifier_for
from broker.evidence.snp.abi import parse_report
from broker.evidence.snp.claims import report_fields
from broker.evidence.snp.products import product_from_cpuid
from broker.evidence.trust import insecure_root, load_certificates
from broker.timeutil import from_unix_ms, parse_instant, utcnow

#: What ``--format`` reads.
EVIDENCE_FORMATS = ("raw", "base64", "hex")
#: ``--at`` with this many digits or more is in milliseconds.
MILLISECOND_DIGITS = 13


# Union of every TEE's collateral flags, so ``--help`` lists them all; a flag that the chosen
# TEE does not read is a usage error rather than silently ignored.
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


def add_verification_arguments(parser: argparse.ArgumentParser) -> None:
    """``--at``, ``--insecure-test-root`` and every verifier's collateral flags.

    Shared by every command that verifies evidence (``evidence verify``, ``policy eval``);
    read them back with :func:`verify_evidence`.
    """
    parser.add_argument(
        "--at",
        metavar="TIME",
        help="the instant to verify at: ISO 8601 with a zone, unix seconds, or unix "
        "milliseconds (13 digits or more) (default now)",
    )
    parser.add_argument(
        "--format",
        choices=EVIDENCE_FORMATS,
        default="raw",
        help="how the evidence file is written: raw bytes (or Trustee's evidence JSON), "
        "base64 or hex (default raw)",
    )
    parser.add_argument(
        "--insecure-test-root",
        action="append",
        type=Path,
        default=[],
        metavar="PEM",
        help="also trust this test root (never for production evidence)",
    )
    parser.add_argument(
        "--collateral",
        type=Path,
        metavar="DIR",
        help="read the TEE's collateral from DIR by its conventional file names "
        "(explicit collateral flags take precedence)",
    )
    options = _all_collateral_options()
    for option in options:
        parser.add_argument(
            option.flag,
            dest=f"collateral_{option.name}",
            metavar="FILE" if option.is_file else "VALUE",
            type=Path if option.is_file else str,
            help=option.help,
        )
    parser.set_defaults(collateral_options=options)


def verifier_or_usage(name: str) -> TeeVerifier:
    """The verifier for ``--tee NAME``; an unknown or unsupported TEE is a usage error."""
    try:
        return verifier_for(parse_tee(name))
    except UnsupportedEvidence as exc:
        raise UsageError(exc.detail) from None


def verify_evidence(
    args: argparse.Namespace, verifier: TeeVerifier, evidence: Path, now: datetime
) -> Claims:
    """Verify ``evidence`` at ``now`` with the collateral and roots named by the flags of
    :func:`add_verification_arguments`; raises ``EvidenceError`` when it does not verify.

    ``evidence`` holds raw evidence or Trustee's evidence JSON for the TEE (what a
    Confidential Containers guest sends a KBS), recognised by its first character; the
    collateral the JSON carries (an SNP ``cert_chain``, a TDX event log) is read first, and
    collateral named by flags takes precedence over it."""
    data = evidence_bytes(args, evidence)
    collateral: dict[str, bytes] = {}
    native = trustee.read_file(verifier.tee, data)
    if native is not None:
        data = native.evidence
        collateral.update(native.collateral)
    if getattr(args, "collateral", None) is not None:
        collateral.update(_collateral_directory(args.collateral, verifier))
    for option in args.collateral_options:
        value = getattr(args, f"collateral_{option.name}", None)
        if value is None:
            continue
        if option.name not in verifier.collateral_names:
            raise UsageError(f"{option.flag} does not apply to --tee {verifier.tee.value}")
        collateral[option.name] = read_input(value) if option.is_file else str(value).encode()
    extra_roots = []
    for index, path in enumerate(args.insecure_test_root):
        for cert in load_certificates(read_input(path)):
            extra_roots.append(insecure_root(cert, f"cli-{index}"))
    return verifier.verify(data, collateral, now=now, extra_roots=extra_roots)


def evidence_bytes(args: argparse.Namespace, evidence: Path) -> bytes:
    """The evidence file's bytes, decoded as ``--format`` says; not that format: usage."""
    try:
        return sniff.decode(read_input(evidence), getattr(args, "format", "raw"))
    except ValueError as exc:
        raise UsageError(f"{evidence}: {exc}") from None


def _collateral_directory(directory: Path, verifier: TeeVerifier) -> dict[str, bytes]:
    """Collateral found in ``directory`` under each option's conventional file names."""
    options = [option for option in verifier.collateral_options if option.filenames]
    if not options:
        raise UsageError(f"--collateral does not apply to --tee {verifier.tee.value}")
    if not directory.is_dir():
        raise UsageError(f"--collateral {directory} is not a directory")
    found: dict[str, bytes] = {}
    for option in options:
        for filename in option.filenames:
            path = directory / filename
            if path.is_file():
                found[option.name] = read_input(path)
                break
    return found


def register(subparsers: Any) -> None:
    group = subparsers.add_parser("evidence", help="verify TEE evidence offline")
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    verify = actions.add_parser(
        "verify",
        help="verify one piece of evidence and print its claims as JSON",
        description="Verify evidence at an instant; prints one JSON object; exit 0/1/2.",
    )
    verify.add_argument(
        "--tee",
        required=True,
        help="snp, tdx, sgx, nitro, snp-vtpm, tdx-vtpm or tpm (az-snp-vtpm, az-tdx-vtpm: aliases)",
    )
    verify.add_argument(
        "evidence",
        type=Path,
        help="evidence file: raw bytes, or Trustee's evidence JSON (what a CoCo guest sends)",
    )
    add_verification_arguments(verify)
    verify.set_defaults(func=run_verify)


def instant(text: str | None) -> datetime:
    """``--at``: ISO 8601, unix seconds, or unix milliseconds (13 digits or more: seconds
    that many are 5,000 years away, milliseconds are what JavaScript and Java print); now
    when absent."""
    if text is None:
        return utcnow()
    if text.isascii() and text.isdigit() and len(text) >= MILLISECOND_DIGITS:
        return from_unix_ms(int(text))
    try:
        return parse_instant(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def run_verify(args: argparse.Namespace) -> int:
    verifier = verifier_or_usage(args.tee)
    now = instant(args.at)
    result: dict[str, Any] = {
        "verified": False,
        "tee": verifier.tee.value,
        "signer": None,
        "claims": None,
        "error": None,
    }
    try:
        claims = verify_evidence(args, verifier, args.evidence, now)
    except EvidenceError as exc:
        result["error"] = {"type": exc.type, "detail": exc.detail}
        former = FORMER_TYPES.get(exc.type)
        if former is not None:  # until FORMER_TYPES_REMOVED_IN (docs/cli.md)
            result["error"]["deprecated_type"] = former
        data = evidence_bytes(args, args.evidence)
        hint = sniff.hint(data, verifier.tee)
        if hint is not None:
            result["error"]["hint"] = hint
        result["unverified_claims"] = unverified_claims(verifier.tee, data)
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


def unverified_claims(tee: Tee, data: bytes) -> dict[str, Any] | None:
    """What evidence that did not verify says of itself, read but NOT verified, so that an
    operator sees why (a debug policy, another measurement): for SNP reports; None for
    the other TEEs and for bytes that do not parse."""
    if tee is not Tee.SNP:
        return None
    try:
        report = parse_report(data)
    except EvidenceError:
        return None
    try:
        turin = report.cpuid is not None and product_from_cpuid(report.cpuid).is_turin
    except EvidenceError:
        turin = False
    plain: dict[str, Any] = json.loads(json.dumps(report_fields(report, turin), default=dict))
    return plain


def _emit(result: dict[str, Any]) -> None:
    json.dump(result, sys.stdout, sort_keys=False)
    sys.stdout.write("\n")
