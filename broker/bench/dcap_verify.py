"""How fast is DCAP quote verification, cold and cached, on the real Intel vectors?

Run from the repository root: ``python -m broker.bench.dcap_verify [--seconds S]
[--compare dcap-qvl] [--vectors tests/vectors]``. It prints one JSON line per vector.

Each vector is a real quote with the real Intel collateral of its folder in
``tests/vectors`` (see its MANIFEST.md), verified at the instant its manifest names:

* ``cached``: the quote verified again with every memo warm (docs/architecture.md §9), what a
  broker pays for each further quote of a platform it has seen: the parse, one P-256
  verification (the quote signature), the checks at ``now`` and the TCB appraisal;
* ``cold``: every memo and remembered signature link cleared before each quote, what the
  first quote of a new platform costs a broker that has nothing cached but its pinned
  certificates: every certificate, CRL and collateral document parsed, eight P-256
  verifications (two chain links, two CRL signatures, TCB Info, QE Identity, QE report,
  quote; the pinned TCB Signing certificate's link to the root is verified at import);
* ``p256``: one bare ECDSA P-256 verification of the quote's own signature, the floor that
  ``cached`` is rated against (target: at least 0.5 of it);
* ``dcap_qvl`` (with ``--compare dcap-qvl``, when PyPI's ``dcap-qvl`` is installed: ``pip
  install -e .[compare]``): the same quote, collateral and instant through dcap-qvl's ``verify``,
  which keeps nothing between calls, so every call is cold (target: ``cold`` at least as
  fast). dcap-qvl refuses the TDX vector's debug TD with "Debug mode is enabled", the last
  check of its verification, after every signature and the TCB matching: that answer is
  counted as a completed verification. It cannot read TCB Info v2 (the 2022 SGX vector).

The machine is shared, so each operation is timed in the CPU time of the measuring thread
(``time.thread_time``: time the scheduler gives other processes is not counted), the
operations run in alternating batches, and each is rated by its fastest batch (as ``timeit``
advises), so that what load remains (shared caches, a busy memory bus) slows every side alike.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from broker.evidence import der
from broker.evidence.claims import Tee
from broker.evidence.dcap.abi import parse_quote
from broker.evidence.dcap.collateral import parse_qe_identity, parse_tcb_info
from broker.evidence.dcap.verify import VerifiedQuote, clear_caches, verify_quote
from broker.evidence.trust import DEFAULT_LINKS

_BATCH = 10
_QVL_DEBUG_REFUSAL = "Debug mode is enabled"


@dataclass(frozen=True, slots=True)
class Vector:
    """A real quote and the collateral files of its folder (names as in the folders)."""

    name: str
    tee: Tee
    quote: str
    collateral_dir: str
    tcb_signing_chain: str
    now: datetime


VECTORS = (
    Vector(
        "tdx/trustee-tdx-v4-debug",
        Tee.TDX,
        "tdx/trustee-tdx-v4-debug/tdx_quote_4.dat",
        "tdx/go-tdx-guest-spr-v4",
        "tcb_info_issuer_chain.pem",
        datetime(2023, 7, 1, 1, 0, tzinfo=UTC),
    ),
    Vector(
        "sgx/libsignal-dcap-2023",
        Tee.SGX,
        "sgx/libsignal-dcap-2023/quote.dat",
        "sgx/libsignal-dcap-2023",
        "tcb_issuer_chain.pem",
        datetime.fromtimestamp(1674105089, UTC),
    ),
    Vector(
        "sgx/libsignal-dcap_v3-2022",
        Tee.SGX,
        "sgx/libsignal-dcap_v3-2022/quote.dat",
        "sgx/libsignal-dcap_v3-2022",
        "tcb_issuer_chain.pem",
        datetime.fromtimestamp(1657856984, UTC),
    ),
)


@dataclass(frozen=True, slots=True)
class Loaded:
    vector: Vector
    quote: bytes
    collateral: Mapping[str, bytes]
    pck_crl_issuer_chain: bytes


def load(vector: Vector, root: Path) -> Loaded:
    folder = root / vector.collateral_dir
    collateral = {
        "tcb_info": (folder / "tcbInfo.json").read_bytes(),
        "qe_identity": (folder / "qeIdentity.json").read_bytes(),
        "pck_crl": (folder / "pck_platform_crl.der").read_bytes(),
        "root_crl": (folder / "root_ca_crl.der").read_bytes(),
        "tcb_signing_chain": (folder / vector.tcb_signing_chain).read_bytes(),
    }
    return Loaded(
        vector,
        (root / vector.quote).read_bytes(),
        collateral,
        (folder / "pck_crl_issuer_chain.pem").read_bytes(),
    )


def clear_everything() -> None:
    """Forget every verified fact the DCAP verifier remembers: a broker that never saw the
    platform, its collateral or Intel's certificates."""
    clear_caches()
    DEFAULT_LINKS.clear()


def rates(operations: Mapping[str, Callable[[], object]], seconds: float) -> dict[str, float]:
    """Operations per second of each of ``operations`` (in this thread's CPU time), run in
    alternating batches for about ``seconds`` of wall-clock time each, each rated by its
    fastest batch."""
    for operation in operations.values():
        operation()  # warm caches and lazy imports
    best = dict.fromkeys(operations, float("inf"))
    deadline = time.perf_counter() + seconds * len(operations)
    while True:  # one round at least, however short ``seconds``
        for name, operation in operations.items():
            start = time.thread_time()
            for _ in range(_BATCH):
                operation()
            best[name] = min(best[name], time.thread_time() - start)
        if time.perf_counter() >= deadline:
            break
    return {name: _BATCH / elapsed for name, elapsed in best.items()}


def _bare_p256(quote: bytes) -> Callable[[], None]:
    parsed = parse_quote(quote)
    key = ec.EllipticCurvePublicKey.from_encoded_point(
        ec.SECP256R1(), b"\x04" + parsed.signature_data.attestation_key
    )
    signature = der.ecdsa_signature(parsed.signature_data.signature)
    signed = quote[: parsed.signed_size]
    algorithm = ec.ECDSA(hashes.SHA256())
    return lambda: key.verify(signature, signed, algorithm)


def _dcap_qvl(loaded: Loaded) -> Callable[[], object] | None:
    """dcap-qvl's verification of ``loaded``, or None when dcap-qvl cannot read its
    collateral; the answer is checked once against ours."""
    qvl: Any = importlib.import_module("dcap_qvl")
    tcb_info = parse_tcb_info(loaded.collateral["tcb_info"])
    qe_identity = parse_qe_identity(loaded.collateral["qe_identity"])
    signing_chain = loaded.collateral["tcb_signing_chain"].decode()
    collateral = qvl.QuoteCollateralV3(
        loaded.pck_crl_issuer_chain.decode(),
        loaded.collateral["root_crl"],
        loaded.collateral["pck_crl"],
        signing_chain,
        tcb_info.signed_bytes.decode(),
        tcb_info.signature,
        signing_chain,
        qe_identity.signed_bytes.decode(),
        qe_identity.signature,
    )
    quote = loaded.quote
    now = int(loaded.vector.now.timestamp())

    def verify() -> str | None:
        try:
            return str(qvl.verify(quote, collateral, now).status)
        except ValueError as exc:
            if _QVL_DEBUG_REFUSAL not in str(exc):
                raise
            return None

    try:
        status = verify()
    except ValueError:
        return None
    ours = _ours(loaded)().appraisal.status.value
    if status is not None and status != ours:
        raise SystemExit(f"{loaded.vector.name}: dcap-qvl says {status}, keybroker {ours}")
    return verify


def _ours(loaded: Loaded) -> Callable[[], VerifiedQuote]:
    vector = loaded.vector
    return lambda: verify_quote(loaded.quote, loaded.collateral, now=vector.now, tee=vector.tee)


def measure(loaded: Loaded, *, seconds: float, compare: bool) -> dict[str, object]:
    cached = _ours(loaded)

    def cold() -> object:
        clear_everything()
        return cached()

    operations: dict[str, Callable[[], object]] = {
        "p256": _bare_p256(loaded.quote),
        "cached": cached,
        "cold": cold,
    }
    qvl = _dcap_qvl(loaded) if compare else None
    if qvl is not None:
        operations["dcap_qvl"] = qvl
    found = rates(operations, seconds)
    result: dict[str, object] = {
        "vector": loaded.vector.name,
        "tee": loaded.vector.tee.value,
        "status": cached().appraisal.status.value,
        **{f"{name}_per_s": round(rate) for name, rate in found.items()},
        "cached_vs_p256": round(found["cached"] / found["p256"], 2),
    }
    if compare:
        result["cold_vs_dcap_qvl"] = (
            None if qvl is None else round(found["cold"] / found["dcap_qvl"], 2)
        )
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m broker.bench.dcap_verify",
        description="DCAP quotes verified per second, cold and cached, on the real vectors.",
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument(
        "--compare",
        choices=["dcap-qvl"],
        help="also measure PyPI dcap-qvl on the same quotes (pip install -e .[compare])",
    )
    parser.add_argument(
        "--vectors", type=Path, default=Path("tests/vectors"), help="the vectors folder"
    )
    args = parser.parse_args(argv)
    if not args.vectors.is_dir():
        parser.error(f"{args.vectors} is not a folder: run from the repository root")
    if args.compare and importlib.util.find_spec("dcap_qvl") is None:
        parser.error("--compare dcap-qvl needs the dcap-qvl package: pip install -e .[compare]")
    for vector in VECTORS:
        loaded = load(vector, args.vectors)
        result = measure(loaded, seconds=args.seconds, compare=args.compare is not None)
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
