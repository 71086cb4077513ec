"""``keybroker reference``: compute reference values from artifacts, and sign reference files.

``compute snp|tdx|nitro`` prints the values, then the reference entry with its provenance
(to paste under a set's ``values``); ``--output FILE`` writes a whole reference file with that
one entry instead. ``sign FILE --key KEY`` writes ``FILE.sig``, the detached signature a
policy's ``reference_sets.signers`` verify (docs/reference-values.md). Exit status: 0 done,
2 unreadable or invalid input.
"""

from __future__ import annotations

import argparse
import base64
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from broker.cli import UsageError
from broker.cli.common import read_input
from broker.policy.signatures import SIGNATURE_SUFFIX
from broker.reference.computed import ArtifactInvalid, Computed
from broker.reference.eif import compute_nitro
from broker.reference.entry import entry_yaml, reference_file_yaml
from broker.reference.snp import (
    DEFAULT_GUEST_FEATURES,
    VCPU_TYPES,
    VMM_TYPES,
    SnpLaunch,
    compute_snp,
)
from broker.reference.tdvf import PageAddOrder, compute_tdx

EXIT_OK, EXIT_ERROR = 0, 2


def register(subparsers: Any) -> None:
    group = subparsers.add_parser(
        "reference", help="compute reference values from artifacts; sign reference files"
    )
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    compute = actions.add_parser(
        "compute", help="compute the measurement a TEE will report for an image"
    )
    tees = compute.add_subparsers(dest="tee", required=True, metavar="TEE")

    snp = tees.add_parser("snp", help="SEV-SNP launch measurement (sev-snp-measure)")
    snp.add_argument("--ovmf", type=Path, required=True, help="the OVMF firmware (OVMF.fd)")
    snp.add_argument("--vcpus", type=int, required=True, metavar="N", help="number of vCPUs")
    snp.add_argument("--vcpu-type", required=True, choices=VCPU_TYPES, metavar="TYPE",
                     help=f"QEMU CPU model: {', '.join(VCPU_TYPES)}")  # fmt: skip
    snp.add_argument("--kernel", type=Path, help="kernel of a direct boot (measured by hash)")
    snp.add_argument("--initrd", type=Path, help="initrd of a direct boot")
    snp.add_argument("--append", help="kernel command line of a direct boot")
    snp.add_argument(
        "--guest-features",
        type=lambda text: int(text, 0),
        default=DEFAULT_GUEST_FEATURES,
        metavar="BITS",
        help="SEV_FEATURES of the VMSAs (default 0x1, SNPActive)",
    )
    snp.add_argument("--vmm-type", choices=VMM_TYPES, default="QEMU", help="default QEMU")
    snp.set_defaults(func=_run_compute, compute=_snp)

    tdx = tees.add_parser("tdx", help="TDX MRTD from the TDVF metadata")
    tdx.add_argument("--tdvf", type=Path, required=True, help="the TD firmware (OVMF.fd)")
    tdx.add_argument(
        "--page-add-order",
        choices=[order.value for order in PageAddOrder],
        default=PageAddOrder.SINGLE_PASS.value,
        help="single-pass (KVM: add and extend each page in turn; default) or two-pass",
    )
    tdx.set_defaults(func=_run_compute, compute=_tdx)

    nitro = tees.add_parser("nitro", help="Nitro PCR0, PCR1, PCR2 (and PCR8) of an EIF")
    nitro.add_argument("--eif", type=Path, required=True, help="the enclave image file")
    nitro.set_defaults(func=_run_compute, compute=_nitro)

    for parser in (snp, tdx, nitro):
        parser.add_argument("--label", help="the entry's label, shown in explanations")
        parser.add_argument(
            "--source",
            metavar="URI",
            help="where the artifacts were built: git commit, SLSA provenance or in-toto URI",
        )
        parser.add_argument(
            "--output",
            type=Path,
            metavar="FILE",
            help="write a reference file (keybroker-references/1) holding this entry",
        )
        parser.add_argument("--set", dest="set_name", metavar="NAME",
                            help="the set's name in --output (default TEE-images)")  # fmt: skip

    sign = actions.add_parser(
        "sign",
        help="write FILE.sig, a detached signature over a reference file",
        description="Sign a reference file with an ECDSA P-256 or Ed25519 private key "
        "(unencrypted PKCS#8 PEM); the signature has the shape cosign sign-blob writes.",
    )
    sign.add_argument("file", type=Path, metavar="FILE", help="the reference file")
    sign.add_argument("--key", type=Path, required=True, help="the private key (PEM)")
    sign.set_defaults(func=_run_sign)


def _snp(args: argparse.Namespace) -> Computed:
    launch = SnpLaunch(
        ovmf=args.ovmf,
        vcpus=args.vcpus,
        vcpu_type=args.vcpu_type,
        kernel=args.kernel,
        initrd=args.initrd,
        append=args.append,
        guest_features=args.guest_features,
        vmm_type=args.vmm_type,
    )
    return compute_snp(launch, source=args.source)


def _tdx(args: argparse.Namespace) -> Computed:
    return compute_tdx(args.tdvf, PageAddOrder(args.page_add_order), source=args.source)


def _nitro(args: argparse.Namespace) -> Computed:
    return compute_nitro(args.eif, source=args.source)


def _run_compute(args: argparse.Namespace) -> int:
    try:
        computed: Computed = args.compute(args)
    except ArtifactInvalid as exc:
        print(f"keybroker: {exc.detail}", file=sys.stderr)
        return EXIT_ERROR
    for claim, value in computed.values.items():
        print(f"{claim}: {value}")
    if args.output is None:
        print()
        print(entry_yaml(computed, args.label), end="")
        return EXIT_OK
    set_name = args.set_name or f"{computed.tee}-images"
    text = reference_file_yaml(computed, set_name, args.label)
    try:
        with args.output.open("x", encoding="utf-8") as out:
            out.write(text)
    except FileExistsError:
        raise UsageError(f"{args.output} exists; choose another --output") from None
    except OSError as exc:
        raise UsageError(f"cannot write {args.output}: {exc.strerror}") from None
    print(f"wrote {args.output} (set {set_name})")
    return EXIT_OK


def _run_sign(args: argparse.Namespace) -> int:
    data = read_input(args.file)
    try:
        key = load_pem_private_key(read_input(args.key), password=None)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{args.key}: not an unencrypted PEM private key ({exc})") from None
    if isinstance(key, ed25519.Ed25519PrivateKey):
        signature = key.sign(data)
    elif isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        signature = key.sign(data, ec.ECDSA(hashes.SHA256()))
    else:
        raise UsageError(f"{args.key}: an ECDSA P-256 or Ed25519 key is needed")
    target = args.file.with_name(args.file.name + SIGNATURE_SUFFIX)
    try:
        target.write_text(base64.b64encode(signature).decode("ascii") + "\n", encoding="ascii")
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror}") from None
    print(f"wrote {target}")
    return EXIT_OK
