"""The floor: the unavoidable work of one release, in a tight loop, on one core.

One release cannot cost less than (ARCHITECTURE §6):

* the evidence's verification by the real verifier, its chain cached (for SNP, in steady
  state, one ECDSA P-384 verify plus parsing and claims);
* the HSM envelope: unwrap the customer secret under the KEK, generate an ephemeral AES key,
  import the tee public key, two ``C_WrapKey`` (``hsm.custody.release_to``). The unwrap is
  counted on every release: the floor's custody must have no secret cache (the broker's
  ``hsm_secret_cache_size``), and :func:`measure` and :func:`envelope_rate` refuse one that
  has, so a cached envelope can never lower the floor the broker is compared with;
* the release response's ES256 signature in the HSM (the envelope is a JWS);
* in the token flow only, the attestation-result token's ES256 signature in the HSM too. A
  token is verified again only by a worker that did not issue it; the benchmark's broker
  issues and redeems its own, so that verification is not part of the floor (it is shown
  among the parts, ``token_verify``).

Each flow has its own floor, the one-request flow one signature fewer. (Before both flows
existed, the floor counted the token's signature and its verification but not the
response's signature: about the same work, one ES256 verify in place of one HSM sign.)

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
    per_cpu_s: float
    """The same per second of this thread's own CPU time: what a core does when it is not
    shared. On a machine that other work loads, the wall-clock rate measures the share the
    loop got; this one does not."""
    parts_per_s: dict[str, float]
    """Each part alone, per second: where the floor's time goes."""


def _rate(operation: Callable[[], object], seconds: float) -> float:
    """Operations per second, sustained over ``seconds`` (after one warm-up call): the same
    kind of figure as the end-to-end rate, which is a mean over its window too."""
    return _rates(operation, seconds)[0]


def _rates(operation: Callable[[], object], seconds: float) -> tuple[float, float]:
    """Operations per second of wall-clock time and per second of this thread's CPU time
    (the HSM is called on this thread: SoftHSM's work is counted too)."""
    operation()
    count = 0
    start, cpu_start = time.perf_counter(), time.thread_time()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(_BATCH):
            operation()
        count += _BATCH
    wall, cpu = time.perf_counter() - start, time.thread_time() - cpu_start
    return count / wall, count / cpu if cpu > 0 else 0.0


def _require_uncached(custody: Custody) -> None:
    if custody.secret_cache.enabled:
        raise ValueError(
            "the floor counts the unwrap of every release: open its custody without a secret "
            f"cache (size {custody.secret_cache.size})"
        )


def measure(
    case: FloorCase,
    custody: Custody,
    seconds: float,
    cpu: int | None = None,
    parts: bool = True,
    *,
    flow: str = "one-request",
) -> FloorResult:
    """Rate the whole floor of ``flow`` (``one-request`` or ``token``) for ``seconds``,
    then (``parts``) each part for a fifth of that."""
    if flow not in ("one-request", "token"):
        raise ValueError(f"flow must be one-request or token, not {flow!r}")
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

    def sign() -> bytes:
        digest = hashlib.sha256(secrets.token_bytes(600)).digest()
        return digest + custody.sign_digest_sync(digest, session)

    def check_token(signed: bytes) -> None:
        digest, raw = signed[:32], signed[32:]
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        public.verify(der, digest, _ES256)

    def one_request_release() -> None:
        verify_evidence()
        envelope()
        sign()  # the response

    def token_release() -> None:
        verify_evidence()
        sign()  # the token
        envelope()
        sign()  # the response

    token = sign()
    each: dict[str, Callable[[], object]] = {
        f"{case.tee}_verify": verify_evidence,
        "hsm_envelope": envelope,
        "hsm_sign": sign,
        "token_verify": lambda: check_token(token),
    }
    whole, whole_cpu = _rates(
        one_request_release if flow == "one-request" else token_release, seconds
    )
    return FloorResult(
        per_s=whole,
        per_cpu_s=whole_cpu,
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
