"""Quotes verified per second by the DCAP verifier, collateral parsed and chains cached.

Run: ``python -m benchmarks.dcap_verify [--seconds S] [--quotes N]``.

The synthetic Intel kit signs N distinct TDX v4 and SGX v3 quotes (distinct REPORTDATA, as
from distinct guests of one platform); each is then verified in turn, with the same
collateral bytes, until S seconds have passed. After the first quote, the TCB Info and QE
Identity signatures, the CRLs, the PCK chain links and the QE report signature come from the
verifier's caches, so a quote costs its parse, one ECDSA P-256 verification (the quote
signature) and the TCB appraisal: what a broker pays per request. The "cold" figure clears
every cache before each quote (two chain links, two CRLs, two collateral signatures, the QE
report and the quote signature: eight P-256 verifications).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections.abc import Callable, Sequence

from broker.evidence.claims import Tee
from broker.evidence.dcap.verify import clear_caches, verify_quote
from broker.evidence.trust import DEFAULT_LINKS
from broker.simulate.intel import IntelKit

NOW = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)


def _rate(work: Callable[[int], None], count: int, seconds: float) -> tuple[float, int]:
    done = 0
    start = time.perf_counter()
    elapsed = 0.0
    while elapsed < seconds:
        work(done % count)
        done += 1
        elapsed = time.perf_counter() - start
    return done / elapsed, done


def measure(tee: Tee, *, quotes: int, seconds: float) -> dict[str, object]:
    kit = IntelKit.create(now=NOW)
    if tee is Tee.TDX:
        evidence = [kit.tdx_quote(i.to_bytes(64, "big")) for i in range(quotes)]
    else:
        evidence = [kit.sgx_quote(i.to_bytes(64, "big")) for i in range(quotes)]
    collateral = kit.collateral(tee, now=NOW)
    roots = kit.extra_roots()

    def warm(index: int) -> None:
        verify_quote(evidence[index], collateral, now=NOW, tee=tee, extra_roots=roots)

    def cold(index: int) -> None:
        clear_caches()
        DEFAULT_LINKS.clear()
        warm(index)

    clear_caches()
    warm(0)
    warm_rate, warm_count = _rate(warm, quotes, seconds)
    cold_rate, cold_count = _rate(cold, quotes, seconds / 2)
    return {
        "tee": tee.value,
        "quotes_per_second_cached": round(warm_rate),
        "quotes_per_second_cold": round(cold_rate),
        "verified": warm_count + cold_count,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dcap_verify")
    parser.add_argument("--seconds", type=float, default=2.0, help="per TEE, cached run")
    parser.add_argument("--quotes", type=int, default=64, help="distinct quotes per TEE")
    args = parser.parse_args(argv)
    for tee in (Tee.TDX, Tee.SGX):
        json.dump(measure(tee, quotes=args.quotes, seconds=args.seconds), sys.stdout)
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
