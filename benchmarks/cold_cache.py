"""What do the floor's operations cost when the CPU caches are cold?

The floor (``broker/bench/floor.py``) runs its operations back to back, so SoftHSM's and
OpenSSL's code and data stay in the core's caches. Inside the broker the same calls run
between unrelated Python (HTTP parsing, JSON, asyncpg), which evicts them. This measures each
operation both ways on one core: hot, in a tight loop, and cold, each call preceded by a
copy of 4 MiB (more than this machine's per-core L2 and its share of L3), the copy's own time
subtracted. The difference is a cost the broker pays on every release and the floor does not
(docs/performance.md, "What stands between the ratio and 1.0").

Run: ``python -m benchmarks.cold_cache [--calls 300] [--rounds 7] [--cpu 0]``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from benchmarks.envelope_cache import random_tee_key
from broker.localstate.softhsm import LocalSoftHsm
from hsm.custody import Custody

EVICTION_BYTES = 4 * 1024 * 1024
_source = bytes(EVICTION_BYTES)
_target = bytearray(EVICTION_BYTES)


def _evict() -> None:
    _target[:] = _source


def _mean_us(operation: Callable[[], object], calls: int, evict: bool) -> float:
    operation()
    start = time.perf_counter()
    for _ in range(calls):
        if evict:
            _evict()
        operation()
    return (time.perf_counter() - start) / calls * 1e6


def hot_and_cold(operation: Callable[[], object], calls: int, rounds: int) -> tuple[float, float]:
    """µs per call in a tight loop, and after an eviction (its own cost subtracted): the
    least of ``rounds`` alternating rounds of each, since a busy machine only adds time."""
    hot, cold = [], []
    for _ in range(rounds):
        eviction = _mean_us(lambda: None, calls, evict=True)
        hot.append(_mean_us(operation, calls, evict=False))
        cold.append(_mean_us(operation, calls, evict=True) - eviction)
    return min(hot), min(cold)


def run(state_dir: Path, calls: int, rounds: int) -> dict[str, tuple[float, float]]:
    softhsm = LocalSoftHsm(state_dir)
    softhsm.up()
    os.environ.update(softhsm.environment())
    custody = Custody.open(softhsm.module_path, softhsm.token_label, softhsm.user_pin, 0)
    try:
        custody.ensure_ready()
        session = custody.pool.session()
        wrapped = custody.import_secret(os.urandom(32))
        tee_key = random_tee_key()
        digest = hashlib.sha256(b"keybroker").digest()
        p384 = ec.generate_private_key(ec.SECP384R1())
        message = os.urandom(0x2A0)  # the signed part of an SNP report
        signature = p384.sign(message, ec.ECDSA(hashes.SHA384()))
        p384_public = p384.public_key()
        operations: dict[str, Callable[[], object]] = {
            "HSM envelope (unwrap, two wraps)": lambda: custody.release_to_sync(
                wrapped, tee_key, session
            ),
            "HSM ES256 signature": lambda: custody.sign_digest_sync(digest, session),
            "ECDSA P-384 verify (OpenSSL)": lambda: p384_public.verify(
                signature, message, ec.ECDSA(hashes.SHA384())
            ),
        }
        return {
            name: hot_and_cold(operation, calls, rounds) for name, operation in operations.items()
        }
    finally:
        custody.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--cpu", type=int, default=None, help="pin to this core")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    with tempfile.TemporaryDirectory(prefix="keybroker-cold-") as state:
        results = run(Path(state), args.calls, args.rounds)
    for name, (hot, cold) in results.items():
        print(f"{name:34s} hot {hot:7.1f} µs   cold {cold:7.1f} µs   (+{cold / hot - 1:.0%})")


if __name__ == "__main__":
    main()
