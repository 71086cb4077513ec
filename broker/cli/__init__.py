"""The ``keybroker`` command: one sub-command group per module in this package."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Each module defines ``register(subparsers)``; its sub-parsers set ``func(args) -> int``.
_GROUPS = (
    "broker.cli.serve",
    "broker.cli.db",
    "broker.cli.evidence",
    "broker.cli.policy",
    "broker.cli.reference",
    "broker.cli.admin",
    "broker.cli.token",
    "broker.cli.collateral",
    "broker.cli.guest",
    "broker.cli.bench",
)


class UsageError(Exception):
    """Bad arguments or unreadable input files: exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keybroker",
        description="Attestation-gated secret release broker.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in _GROUPS:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.func(args)
    except UsageError as exc:
        print(f"keybroker: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return status


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
