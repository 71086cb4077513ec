"""``keybroker guest``: act as a confidential VM or enclave.

``guest fetch`` is the lean guest client's ``keybroker-guest fetch`` (``keybroker_guest.cli``),
offered here so that the full package's one command does everything: same arguments, same
exit statuses (docs/boot.md). With ``--simulate`` the evidence comes from the synthetic vendor
kits under the state directory (``<state>/demo/<tee>``), which a broker trusts only through
``insecure_test_roots``; a vTPM guest's (``snp-vtpm``, ``tdx-vtpm``, ``tpm``) is swtpm,
provisioned from the SNP kit, the Intel kit or a saved synthetic vTPM CA. Without it, a real
SNP or TDX guest reads its report through Linux configfs-tsm, and a real vTPM guest
(``snp-vtpm`` on Azure, ``tpm`` on GCE) reads and quotes through tpm2-tools
(``keybroker_guest.vtpm``).

``guest evidence --tee nitro --simulate`` writes a simulated Nitro attestation document that
binds a given public key: what an enclave passes to KMS as a ``Recipient`` (docs/kms.md).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from keybroker_guest.cli import add_fetch_arguments
from keybroker_guest.cli import run_fetch as run_lean_fetch
from keybroker_guest.transport import Transport

from broker.cli import UsageError
from broker.errors import ConfigurationError
from broker.simulate.guests import SimulatedNitro


def register(subparsers: Any) -> None:
    guest = subparsers.add_parser("guest", help="the guest side: attest and fetch a key")
    actions = guest.add_subparsers(dest="action", required=True, metavar="ACTION")
    fetch = actions.add_parser("fetch", help="challenge, attest, release, unwrap")
    add_fetch_arguments(fetch)
    fetch.set_defaults(func=run_fetch)
    evidence = actions.add_parser(
        "evidence",
        help="write a simulated attestation document binding a public key (a KMS Recipient)",
    )
    evidence.add_argument("--tee", required=True, choices=["nitro"])
    evidence.add_argument(
        "--simulate", action="store_true", help="synthetic evidence (demo, tests)"
    )
    evidence.add_argument(
        "--public-key", required=True, type=Path, help="PEM public key the document binds"
    )
    evidence.add_argument("--out", required=True, type=Path, help="where to write the document")
    evidence.add_argument(
        "--debug", action="store_true", help="a debug-mode enclave's document (PCR0-2 zero)"
    )
    evidence.add_argument(
        "--kit", type=Path, help="synthetic Nitro authority directory (default <state>/demo/nitro)"
    )
    evidence.add_argument("--state-dir", type=Path, default=Path(".keybroker"))
    evidence.set_defaults(func=run_evidence)


def run_fetch(args: argparse.Namespace, transport: Transport | None = None) -> int:
    """``keybroker-guest fetch`` under this command's name; ``transport`` replaces the
    network (tests)."""
    return run_lean_fetch(args, transport, prog="keybroker guest")


def run_evidence(args: argparse.Namespace) -> int:
    if not args.simulate:
        raise UsageError(
            "--tee nitro needs --simulate: a real enclave's document comes from its Nitro "
            "Secure Module (/dev/nsm), which the enclave application asks itself"
        )
    public_key = _public_key_der(args.public_key)
    kit = args.kit or args.state_dir / "demo" / args.tee
    if not kit.is_dir():
        raise UsageError(
            f"simulation kit {kit} does not exist (make run creates the nitro kit; pass --kit "
            "DIR for an authority saved with broker.simulate.nitro)"
        )
    try:
        document = SimulatedNitro(kit, debug=args.debug).document(public_key)
    except ConfigurationError as exc:
        raise UsageError(str(exc)) from None
    try:
        args.out.write_bytes(document)
    except OSError as exc:
        print(f"keybroker guest: cannot write {args.out}: {exc.strerror}", file=sys.stderr)
        return 1
    thumbprint = hashlib.sha256(public_key).hexdigest()[:16]
    mode = "debug-mode" if args.debug else "production-mode"
    print(
        f"wrote a simulated {mode} Nitro attestation document ({len(document)} bytes) "
        f"binding the public key sha256:{thumbprint}... to {args.out}",
        file=sys.stderr,
    )
    return 0


def _public_key_der(path: Path) -> bytes:
    """The DER SubjectPublicKeyInfo of the PEM public key in ``path``."""
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read --public-key {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError:
        raise UsageError(
            f"--public-key {path} holds no PEM public key (make one with "
            "`openssl pkey -in key.pem -pubout`)"
        ) from None
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
