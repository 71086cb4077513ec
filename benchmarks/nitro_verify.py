"""Nitro attestation documents verified per second on one core, with the chain cached.

    python -m benchmarks.nitro_verify [--seconds 3] [--document FILE --at TIME]

Two figures:

* **same document**: one document verified again and again. Every certificate link is in the
  link cache and every certificate is parsed once, so each verification costs the strict
  CBOR parse, the validity checks and one ES384 (P-384) signature verification. This is the
  cost per request when an enclave presents a document whose chain was seen before.
* **fresh leaf**: a stream of documents from the synthetic PKI, each with its own three-hour
  document certificate as the NSM issues them. The intermediates stay cached; each document
  adds one P-384 link verification for its leaf. This is the cost for a new enclave.

By default both use the synthetic PKI (``broker.simulate.nitro``); ``--document`` and ``--at``
measure "same document" on a real one instead.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from broker.evidence.nitro.verify import verify
from broker.evidence.trust import TrustedRoot
from broker.simulate.nitro import FakeNitroAuthority
from broker.timeutil import parse_instant

_AT = datetime.fromisoformat("2026-01-01T00:00:00+00:00")
_PCRS = {index: bytes([index + 1]) * 48 for index in (0, 1, 2, 3, 4, 8)}
_FRESH_DOCUMENTS = 300


def _rate(seconds: float, step: Callable[[], object]) -> tuple[int, float]:
    """Run ``step`` for about ``seconds``; return (count, elapsed)."""
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        step()
        count += 1
        if count % 50 == 0 and time.perf_counter() >= deadline:
            return count, time.perf_counter() - start


def same_document(
    document: bytes, at: datetime, roots: Sequence[TrustedRoot], seconds: float
) -> float:
    verify(document, {}, now=at, extra_roots=roots)  # warm the link and certificate caches
    count, elapsed = _rate(seconds, lambda: verify(document, {}, now=at, extra_roots=roots))
    return count / elapsed


def fresh_leaves(authority: FakeNitroAuthority, count: int) -> float:
    roots = [authority.trusted_root()]
    documents = [
        authority.sign_document(pcrs=_PCRS, timestamp=_AT, nonce=index.to_bytes(32, "big"))
        for index in range(count + 1)
    ]
    verify(documents[0], {}, now=_AT, extra_roots=roots)  # cache the intermediates
    start = time.perf_counter()
    for document in documents[1:]:
        verify(document, {}, now=_AT, extra_roots=roots)
    return count / (time.perf_counter() - start)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.nitro_verify")
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of the timed loop")
    parser.add_argument("--document", help="a real Nitro document (COSE_Sign1 bytes)")
    parser.add_argument("--at", help="instant at which --document verifies (ISO 8601)")
    args = parser.parse_args(argv)
    if (args.document is None) != (args.at is None):
        parser.error("--document and --at go together")

    authority = FakeNitroAuthority.generate()
    if args.document is None:
        label = "synthetic document"
        document = authority.sign_document(pcrs=_PCRS, timestamp=_AT)
        at, roots = _AT, [authority.trusted_root()]
    else:
        label = args.document
        document = Path(args.document).read_bytes()
        at, roots = parse_instant(args.at), []

    same = same_document(document, at, roots, args.seconds)
    print(f"same document ({label}), chain cached: {same:,.0f} documents/s")
    fresh = fresh_leaves(authority, _FRESH_DOCUMENTS)
    print(f"fresh leaf per document, intermediates cached: {fresh:,.0f} documents/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
