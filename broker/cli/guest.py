"""``keybroker guest fetch``: act as a confidential VM or enclave and fetch a key.

With ``--simulate`` the evidence comes from the synthetic vendor kits under the state
directory (``<state>/demo/<tee>``), which a broker trusts only through
``insecure_test_roots``; a vTPM guest's (``snp-vtpm``, ``tdx-vtpm``, ``tpm``) is swtpm,
provisioned from the SNP kit, the Intel kit or a saved synthetic vTPM CA. Without it, a real
SNP or TDX guest reads its report through Linux configfs-tsm, and a real vTPM guest
(``snp-vtpm`` on Azure, ``tpm`` on GCE) reads and quotes through tpm2-tools
(``broker/guest/vtpm.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from broker.cli import UsageError
from broker.guest.client import GuestClient, GuestError
from broker.guest.configfs import ConfigfsError
from broker.guest.sources import (
    EvidenceSource,
    HardwareTsm,
    SimulatedNitro,
    SimulatedSgx,
    SimulatedSnp,
    SimulatedTdx,
)
from broker.guest.tpm2 import Tpm2Error
from broker.guest.vtpm import VTPM_TEES, SimulatedVtpm, VtpmGuest
from broker.privatefiles import write_private_bytes
from broker.simulate.swtpm import SwtpmError

#: ``--simulate`` sources: each takes the kit directory (``broker.simulate``'s saved SNP kit,
#: Intel kit or Nitro authority) and produces evidence signed by it.
SIMULATED: dict[str, Callable[[Path], EvidenceSource]] = {
    "snp": SimulatedSnp,
    "tdx": SimulatedTdx,
    "sgx": SimulatedSgx,
    "nitro": SimulatedNitro,
    **{tee: partial(SimulatedVtpm, tee=tee) for tee in VTPM_TEES},
}
#: The kit a simulated vTPM's platform is provisioned from: the paravisor's hardware report
#: is signed by the SNP or Intel kit; the tpm kit is a saved synthetic vTPM CA.
KIT_OF = {"snp-vtpm": "snp", "tdx-vtpm": "tdx"}


def register(subparsers: Any) -> None:
    guest = subparsers.add_parser("guest", help="the guest side: attest and fetch a key")
    actions = guest.add_subparsers(dest="action", required=True, metavar="ACTION")
    fetch = actions.add_parser("fetch", help="challenge, attest, release, unwrap")
    fetch.add_argument("--url", required=True, help="broker base URL")
    fetch.add_argument("--key", required=True, help="key name")
    fetch.add_argument("--tee", required=True, choices=["snp", "tdx", "sgx", "nitro", *VTPM_TEES])
    fetch.add_argument("--simulate", action="store_true", help="synthetic evidence (demo, tests)")
    fetch.add_argument(
        "--kit", type=Path, help="synthetic kit directory (default <state>/demo/<tee>)"
    )
    fetch.add_argument("--state-dir", type=Path, default=Path(".keybroker"))
    fetch.add_argument("--rsa-bits", type=int, choices=[3072, 4096], default=3072)
    fetch.add_argument("--out", type=Path, help="write the secret here (mode 0600), not stdout")
    fetch.set_defaults(func=run_fetch)


def source_for(args: argparse.Namespace) -> EvidenceSource:
    if not args.simulate:
        if args.tee in ("snp-vtpm", "tpm"):
            return VtpmGuest(args.tee)
        if args.tee not in ("snp", "tdx"):
            raise UsageError(
                f"--tee {args.tee} needs --simulate (configfs-tsm serves snp, tdx; the vTPM "
                "serves snp-vtpm, tpm)"
            )
        return HardwareTsm(args.tee)
    factory = SIMULATED.get(args.tee)
    if factory is None:
        raise UsageError(f"no simulator for --tee {args.tee}")
    kit = args.kit or args.state_dir / "demo" / KIT_OF.get(args.tee, args.tee)
    if not kit.is_dir():
        raise UsageError(
            f"simulation kit {kit} does not exist (make run creates the snp kit; pass --kit "
            "DIR for a kit saved with broker.simulate)"
        )
    return factory(kit)


def run_fetch(args: argparse.Namespace, transport: httpx.AsyncBaseTransport | None = None) -> int:
    """Exit 0 with the secret written; 1 when the broker refuses or cannot be reached, or
    configfs-tsm fails; usage errors (exit 2) raise :class:`UsageError`. ``transport``
    replaces the network (tests)."""
    source = source_for(args)

    async def fetch() -> bytes:
        async with httpx.AsyncClient(base_url=args.url, timeout=30, transport=transport) as http:
            released = await GuestClient(http).fetch(source, args.key, args.rsa_bits)
        print(
            f"released {released.key} version {released.version} ({len(released.secret)} bytes)",
            file=sys.stderr,
        )
        return released.secret

    try:
        secret = asyncio.run(fetch())
    except (GuestError, ConfigfsError, Tpm2Error, SwtpmError) as exc:
        print(f"keybroker guest: {exc}", file=sys.stderr)
        return 1
    except httpx.HTTPError as exc:
        print(f"keybroker guest: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    if args.out is not None:
        write_private_bytes(args.out, secret)
    else:
        sys.stdout.buffer.write(secret)
        sys.stdout.flush()
    return 0
