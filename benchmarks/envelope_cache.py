"""What does the secret cache save on an HSM envelope?

``Custody.release_to_sync`` in a loop on the calling thread's session, against a SoftHSM
token made in a temporary directory, with the cache off (size 0: unwrap and destroy on every
release, as the floor does) and on (256 entries), for one key, for a working set the cache
holds (100 keys in turn), for one it does not (300 keys in turn: every key is released again
before the cache could keep it, so every release is a miss and an eviction) and for keys
released at random among far more than it holds (20,000: most releases are a key's first in a
while, which the cache does not keep). Rounds alternate between the two custodies so that a
busy machine slows both alike; the minimum and the median of the rounds are printed
(docs/performance.md).

Run: ``python -m benchmarks.envelope_cache [--rounds 9] [--calls 2000] [--cpu 0]``.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from broker.localstate.softhsm import LocalSoftHsm
from hsm.custody import Custody, WrappedSecret
from hsm.pubkey import RsaPublicKey, from_spki_der
from hsm.secretcache import SecretCacheLimits

CACHE_SIZE = 256
#: Name: (keys, taken at random rather than in turn).
WORKING_SETS = {
    "1 key": (1, False),
    "100 keys in turn": (100, False),
    "300 keys in turn": (300, False),
    "20000 keys at random": (20000, True),
}


def random_tee_key() -> RsaPublicKey:
    public = rsa.generate_private_key(65537, 3072).public_key()
    return from_spki_der(
        public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def microseconds_per_envelope(
    custody: Custody,
    keys: Sequence[WrappedSecret],
    tee_key: RsaPublicKey,
    calls: int,
    at_random: bool = False,
) -> float:
    """Mean µs of one envelope, the keys taken in turn or at random (the same draw for every
    custody), after an unmeasured warm-up of as many releases (at most ``calls``) as keys."""
    session = custody.pool.session()
    if at_random:
        draw = random.Random(len(keys)).choices(keys, k=2 * calls)  # noqa: S311 - not a secret
        warm_up, order = draw[:calls], draw[calls:]
    else:
        warm_up = list(keys[:calls])
        order = [keys[index % len(keys)] for index in range(calls)]
    for wrapped in warm_up:
        custody.release_to_sync(wrapped, tee_key, session)
    start = time.perf_counter()
    for wrapped in order:
        custody.release_to_sync(wrapped, tee_key, session)
    return (time.perf_counter() - start) / calls * 1e6


def run(state_dir: Path, rounds: int, calls: int) -> dict[str, list[float]]:
    softhsm = LocalSoftHsm(state_dir)
    softhsm.up()
    os.environ.update(softhsm.environment())
    custodies = {
        name: Custody.open(
            softhsm.module_path, softhsm.token_label, softhsm.user_pin, 0, SecretCacheLimits(size)
        )
        for name, size in (("off", 0), ("on", CACHE_SIZE))
    }
    try:
        for custody in custodies.values():
            custody.ensure_ready()
        first = custodies["off"]
        most = max(count for count, _ in WORKING_SETS.values())
        keys = [first.import_secret(os.urandom(32)) for _ in range(most)]
        tee_key = random_tee_key()
        timings: dict[str, list[float]] = {}
        for _ in range(rounds):
            for label, (count, at_random) in WORKING_SETS.items():
                for name, custody in custodies.items():
                    timings.setdefault(f"cache {name}, {label}", []).append(
                        microseconds_per_envelope(custody, keys[:count], tee_key, calls, at_random)
                    )
        return timings
    finally:
        for custody in custodies.values():
            custody.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--cpu", type=int, default=None, help="pin to this core")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    with tempfile.TemporaryDirectory(prefix="keybroker-envelope-") as state:
        timings = run(Path(state), args.rounds, args.calls)
    for label, values in timings.items():
        print(f"{label:32s} min {min(values):6.1f} µs   median {statistics.median(values):6.1f} µs")


if __name__ == "__main__":
    main()
