"""``keybroker guest fetch``: act as a confidential VM or enclave and fetch a key.

The lean guest client's ``keybroker-guest fetch`` (``keybroker_guest.cli``), offered here so
that the full package's one command does everything: same arguments, same exit statuses
(docs/boot.md). With ``--simulate`` the evidence comes from the synthetic vendor kits under
the state directory (``<state>/demo/<tee>``), which a broker trusts only through
``insecure_test_roots``; a vTPM guest's (``snp-vtpm``, ``tdx-vtpm``, ``tpm``) is swtpm,
provisioned from the SNP kit, the Intel kit or a saved synthetic vTPM CA. Without it, a real
SNP or TDX guest reads its report through Linux configfs-tsm, and a real vTPM guest
(``snp-vtpm`` on Azure, ``tpm`` on GCE) reads and quotes through tpm2-tools
(``keybroker_guest.vtpm``).
"""

from __future__ import annotations

import argparse
from typing import Any

from keybroker_guest.cli import add_fetch_arguments
from keybroker_guest.cli import run_fetch as run_lean_fetch
from keybroker_guest.transport import Transport


def register(subparsers: Any) -> None:
    guest = subparsers.add_parser("guest", help="the guest side: attest and fetch a key")
    actions = guest.add_subparsers(dest="action", required=True, metavar="ACTION")
    fetch = actions.add_parser("fetch", help="challenge, attest, release, unwrap")
    add_fetch_arguments(fetch)
    fetch.set_defaults(func=run_fetch)


def run_fetch(args: argparse.Namespace, transport: Transport | None = None) -> int:
    """``keybroker-guest fetch`` under this command's name; ``transport`` replaces the
    network (tests)."""
    return run_lean_fetch(args, transport, prog="keybroker guest")
