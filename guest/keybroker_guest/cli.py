"""``keybroker-guest``: fetch a key as a confidential VM, and list what an initramfs needs.

``keybroker-guest fetch`` is also ``keybroker guest fetch`` in the full package (same
arguments, same exit statuses, docs/boot.md "Exit statuses").
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from keybroker_guest import initramfs
from keybroker_guest.errors import ExitStatus, GuestError, UsageError
from keybroker_guest.evidence import TEES, EvidenceSource, default_kit, source_for
from keybroker_guest.flow import FLOWS, BrokerKeyPin, fetch
from keybroker_guest.output import write_secret
from keybroker_guest.tdquote import IMDS_TD_QUOTE_URL
from keybroker_guest.teekey import RSA_BITS
from keybroker_guest.transport import (
    BrokerUrl,
    HttpTransport,
    RetryingTransport,
    TlsTrust,
    Transport,
    parse_pin,
)

DEFAULT_WAIT_SECONDS = 60.0


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", required=True, help="broker base URL, http(s)://host[:port]")
    parser.add_argument(
        "--ca", type=Path, help="PEM file of the CA(s) that issued the broker's TLS certificate"
    )
    parser.add_argument(
        "--pin-sha256",
        action="append",
        default=[],
        metavar="BASE64",
        help="SHA-256 of the broker's TLS SubjectPublicKeyInfo in base64 (RFC 7469); repeatable",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=DEFAULT_WAIT_SECONDS,
        metavar="SECONDS",
        help="keep retrying an unreachable or busy broker this long (default 60; 0: once)",
    )


def add_fetch_arguments(parser: argparse.ArgumentParser) -> None:
    add_connection_arguments(parser)
    parser.add_argument("--key", required=True, help="key name")
    parser.add_argument("--tee", required=True, choices=TEES)
    parser.add_argument(
        "--broker-key-sha256",
        metavar="THUMBPRINT",
        help="RFC 7638 thumbprint of the broker's signing key (the kid of its /v1/jwks)",
    )
    parser.add_argument("--simulate", action="store_true", help="synthetic evidence (demo, tests)")
    parser.add_argument(
        "--kit",
        type=Path,
        help="synthetic kit directory (default <state>/demo/<tee>; snp-vtpm and tdx-vtpm: the "
        "snp and tdx kits)",
    )
    parser.add_argument("--state-dir", type=Path, default=Path(".keybroker"))
    parser.add_argument("--rsa-bits", type=int, choices=RSA_BITS, default=3072)
    parser.add_argument(
        "--flow",
        choices=FLOWS,
        default=FLOWS[0],
        help="release with the evidence in one request (default), or attest for a token first",
    )
    parser.add_argument("--out", type=Path, help="write the key here (mode 0600), not to stdout")
    parser.add_argument(
        "--td-quote-url",
        default=IMDS_TD_QUOTE_URL,
        help=f"tdx-vtpm: the host's TD quote service (default {IMDS_TD_QUOTE_URL}, Azure's)",
    )


def tls_trust(ca: Path | None, pins: Sequence[str]) -> TlsTrust:
    ca_pem = None
    if ca is not None:
        try:
            ca_pem = ca.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read the CA file {ca}: {exc}") from None
    return TlsTrust(ca_pem, tuple(parse_pin(pin) for pin in pins))


def connect(url: BrokerUrl, trust: TlsTrust, wait: float, prog: str) -> RetryingTransport:
    """The transport to ``url``: HTTPS judged by ``trust``, retried for ``wait`` seconds."""
    if url.scheme == "http" and (trust.ca_pem is not None or trust.pins):
        raise UsageError("--ca and --pin-sha256 judge TLS: they need an https URL")
    if not 0 <= wait <= 3600:
        raise UsageError("--wait must be within 0..3600 seconds")
    return RetryingTransport(
        HttpTransport(url, trust),
        wait_seconds=wait,
        notice=lambda message: print(f"{prog}: {message}", file=sys.stderr, flush=True),
    )


def fetch_source(args: argparse.Namespace) -> EvidenceSource:
    kit = args.kit or default_kit(args.tee, args.state_dir)
    return source_for(args.tee, args.simulate, kit, args.td_quote_url)


def run_fetch(
    args: argparse.Namespace, transport: Transport | None = None, prog: str = "keybroker-guest"
) -> int:
    """Exit 0 with the key written; else the status of the failure's class (errors.py).
    ``transport`` replaces the network (tests)."""
    try:
        source = fetch_source(args)
        url = BrokerUrl.parse(args.url)
        channel = connect(url, tls_trust(args.ca, args.pin_sha256), args.wait, prog)
        if transport is not None:
            channel.inner = transport
        released = fetch(
            channel,
            source,
            args.key,
            BrokerKeyPin(thumbprint=args.broker_key_sha256),
            authenticated=url.authenticated,
            rsa_bits=args.rsa_bits,
            flow=args.flow,
        )
    except GuestError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return exc.exit_status
    print(
        f"released {released.key} version {released.version} ({len(released.secret)} bytes)",
        file=sys.stderr,
    )
    try:
        write_secret(released.secret, args.out)
    except OSError as exc:
        print(f"{prog}: cannot write {args.out}: {exc.strerror}", file=sys.stderr)
        return ExitStatus.UNEXPECTED
    return ExitStatus.OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keybroker-guest", description="keybroker's guest side for confidential VMs."
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    fetch_parser = actions.add_parser("fetch", help="challenge, attest, release, unwrap")
    add_fetch_arguments(fetch_parser)
    fetch_parser.set_defaults(func=run_fetch)
    initramfs.register(actions)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    return status
