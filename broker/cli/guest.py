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
With ``--nonce`` (from ``POST /v1/challenge``), and for every other tee, it writes an evidence
bundle instead (``keybroker_guest.kms``): the guest's evidence binding the key and the nonce,
what any other guest passes as the ``Recipient``'s ``AttestationDocument``. SNP and TDX
evidence comes from the hardware unless ``--simulate``.
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
from keybroker_guest.errors import UsageError as GuestUsageError
from keybroker_guest.evidence import TEES, default_kit, source_for
from keybroker_guest.kms import recipient_evidence
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
        help="write evidence binding a public key, as a KMS Recipient carries it",
    )
    evidence.add_argument("--tee", required=True, choices=TEES)
    evidence.add_argument(
        "--simulate", action="store_true", help="synthetic evidence (demo, tests)"
    )
    evidence.add_argument(
        "--public-key", required=True, type=Path, help="PEM public key the document binds"
    )
    evidence.add_argument(
        "--nonce",
        help="the nonce of POST /v1/challenge for this tee: write an evidence bundle binding "
        "it (required for every tee but nitro)",
    )
    evidence.add_argument("--out", required=True, type=Path, help="where to write the document")
    evidence.add_argument(
        "--debug", action="store_true", help="a simulated debug-mode guest (Nitro: PCR0-2 zero)"
    )
    evidence.add_argument(
        "--kit", type=Path, help="synthetic vendor kit directory (default <state>/demo/<tee>)"
    )
    evidence.add_argument("--state-dir", type=Path, default=Path(".keybroker"))
    evidence.set_defaults(func=run_evidence)


def run_fetch(args: argparse.Namespace, transport: Transport | None = None) -> int:
    """``keybroker-guest fetch`` under this command's name; ``transport`` replaces the
    network (tests)."""
    return run_lean_fetch(args, transport, prog="keybroker guest")


def run_evidence(args: argparse.Namespace) -> int:
    if args.tee == "nitro" and args.nonce is None:
        return _nitro_document(args)
    if args.nonce is None:
        raise UsageError(
            f"--tee {args.tee} needs --nonce: its evidence binds a nonce the broker issued "
            f'(POST /v1/challenge {{"tee": "{args.tee}"}})'
        )
    public_key = _public_key_der(args.public_key)
    kit = args.kit or default_kit(args.tee, args.state_dir)
    try:
        source = source_for(args.tee, args.simulate, kit)
    except GuestUsageError as exc:
        raise UsageError(str(exc)) from None
    if args.debug:
        if not args.simulate or not hasattr(source, "debug"):
            raise UsageError("--debug is for a simulated snp, tdx, sgx or nitro guest")
        source.debug = True
    try:
        bundle = recipient_evidence(source, public_key, args.nonce)
    except (ValueError, ConfigurationError) as exc:
        raise UsageError(str(exc)) from None
    return _write(args.out, bundle, f"a KMS evidence bundle of {args.tee} evidence", public_key)


def _nitro_document(args: argparse.Namespace) -> int:
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
    mode = "debug-mode" if args.debug else "production-mode"
    return _write(args.out, document, f"a simulated {mode} Nitro attestation document", public_key)


def _write(out: Path, data: bytes, what: str, public_key: bytes) -> int:
    try:
        out.write_bytes(data)
    except OSError as exc:
        print(f"keybroker guest: cannot write {out}: {exc.strerror}", file=sys.stderr)
        return 1
    thumbprint = hashlib.sha256(public_key).hexdigest()[:16]
    print(
        f"wrote {what} ({len(data)} bytes) binding the public key sha256:{thumbprint}... to {out}",
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
