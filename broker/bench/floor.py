"""The floor: the unavoidable work of one release, in a tight loop, on one core.

One release cannot cost less than (ARCHITECTURE §6):

* the evidence's verification by the real verifier, its chain cached (for SNP, in steady
  state, one ECDSA P-384 verify plus parsing and claims);
* the HSM envelope: unwrap the customer secret under the KEK, generate an ephemeral AES key,
  import the tee public key, two ``C_WrapKey`` (``hsm.custody.release_to``). The unwrap is
  counted on every release: the floor's custody must have no secret cache (the broker's
  ``hsm_secret_cache_size``), and :func:`measure` and :func:`envelope_rate` refuse one that
  has, so a cached envelope can never lower the floor the broker is compared with;
* the attestation-result token's ES256 signature in the HSM, and its verification.

No HTTP, no JSON, no database: this is what the end-to-end rate is compared with. The HSM
calls run on the calling thread's own session (no executor hop), as the cheapest way the
token can be driven.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

from broker.evidence.registry import verifier_for
from broker.evidence.trust import TrustedRoot
from hsm.custody import Custody, WrappedSecret
from hsm.pubkey import RsaPublicKey

_ES256 = ec.ECDSA(Prehashed(hashes.SHA256()))
_BATCH = 20


@dataclass(frozen=True, slots=True)
class FloorCase:
    """What one release's unavoidable work operates on."""

    tee: str
    evidence: bytes
    collateral: dict[str, bytes]
    roots: tuple[TrustedRoot, ...]
    now: datetime
    wrapped: WrappedSecret
    tee_key: RsaPublicKey


@dataclass(frozen=True, slots=True)
class FloorResult:
    per_s: float
    """Whole releases' unavoidable work per second, sustained."""
    parts_per_s: dict[str, float]
    """Each part alone, per second: where the floor's time goes."""


def _rate(operation: Callable[[], object], seconds: float) -> float:
    """Operations per second, sustained over ``seconds`` (after one warm-up call): the same
    kind of figure as the end-to-end rate, which is a mean over its window too."""
    operation()
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(_BATCH):
            operation()
        count += _BATCH
    return count / (time.perf_counter() - start)


def _require_uncached(custody: Custody) -> None:
    if custody.secret_cache.enabled:
        raise ValueError(
            "the floor counts the unwrap of every release: open its custody without a secret "
            f"cache (size {custody.secret_cache.size})"
        )


def measure(
    case: FloorCase, custody: Custody, seconds: float, cpu: int | None = None, parts: bool = True
) -> FloorResult:
    """Rate the whole floor for ``seconds``, then (``parts``) each part for a fifth of that."""
    _require_uncached(custody)
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    verifier = verifier_for(case.tee)
    session = custody.pool.session()
    public = custody.signing_public_key

    def verify_evidence() -> None:
        verifier.verify(case.evidence, case.collateral, now=case.now, extra_roots=case.roots)

    def envelope() -> None:
        custody.release_to_sync(case.wrapped, case.tee_key, session)

    def sign_token() -> bytes:
        digest = hashlib.sha256(secrets.token_bytes(600)).digest()
        return digest + custody.sign_digest_sync(digest, session)

    def check_token(signed: bytes) -> None:
        digest, raw = signed[:32], signed[32:]
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        public.verify(der, digest, _ES256)

    def one_release() -> None:
        verify_evidence()
        envelope()
        check_token(sign_token())

    token = sign_token()
    each: dict[str, Callable[[], object]] = {
        f"{case.tee}_verify": verify_evidence,
        "hsm_envelope": envelope,
        "token_sign": sign_token,
        "token_verify": lambda: check_token(token),
    }
    whole = _rate(one_release, seconds)
    return FloorResult(
        per_s=whole,
        parts_per_s={
            name: _rate(part, max(0.5, seconds / 5)) for name, part in each.items() if parts
        },
    )


def envelope_rate(
    custody: Custody,
    wrapped: WrappedSecret,
    tee_keys: Sequence[RsaPublicKey],
    threads: int,
    seconds: float,
) -> float:
    """Envelopes per second with ``threads`` threads calling ``release_to`` in a loop."""
    _require_uncached(custody)
    import threading  # noqa: PLC0415 - only this measurement uses threads

    counts = [0] * threads
    stop = time.perf_counter() + seconds

    def loop(index: int) -> None:
        key = tee_keys[index % len(tee_keys)]
        while time.perf_counter() < stop:
            custody.release_to(wrapped, key)
            counts[index] += 1

    started = time.perf_counter()
    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(counts) / (time.perf_counter() - started)
