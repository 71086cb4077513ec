"""How much does a vTPM bundle cost over the SNP report inside it?

An Azure SEV-SNP CVM's evidence (``snp-vtpm``) is an SNP report plus the paravisor's runtime
data, the vTPM quote (one RSA-2048 verify) and its PCR digest. Both verifications run warm
(the VCEK chain cached), on the same real report: Trustee's evidence-v2.json against the SNP
report it holds with the same VCEK. The target (docs/vtpm.md) is that the bundle costs at
most 1.5x the plain report: bundle rate >= 2/3 of the report rate.

Run: ``python -m benchmarks.vtpm_verify [--seconds 3]`` from the repository root.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.snp_verify import compare
from broker.evidence.claims import Tee
from broker.evidence.registry import verifier_for
from broker.evidence.snp import verify as verify_snp

_VECTOR = Path(__file__).parents[1] / "tests/vectors/azure-vtpm/trustee-az-snp-vtpm"
_AT = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class BenchResult:
    bundle_per_s: float
    report_per_s: float

    @property
    def cost(self) -> float:
        """What one bundle costs, in plain report verifications."""
        return self.report_per_s / self.bundle_per_s


def measure(seconds: float = 3.0) -> BenchResult:
    bundle = (_VECTOR / "evidence-v2.json").read_bytes()
    # The SNP report and VCEK the bundle holds, as the vector folder derives them.
    report = (_VECTOR / "evidence-v2.snp_report.bin").read_bytes()
    vcek = {"vcek": (_VECTOR / "evidence-v2.vcek.der").read_bytes()}
    snp_vtpm = verifier_for(Tee.SNP_VTPM)

    def plain() -> object:
        return verify_snp(report, vcek, now=_AT)

    def vtpm() -> object:
        return snp_vtpm.verify(bundle, {}, now=_AT)

    bundle_rate, report_rate = compare(vtpm, plain, seconds)
    return BenchResult(bundle_per_s=bundle_rate, report_per_s=report_rate)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.vtpm_verify", description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement (default 3)")
    args = parser.parse_args(argv)
    result = measure(args.seconds)
    print("case: trustee az-snp-vtpm evidence-v2 (real Milan report, pinned AMD chain)")
    print(f"SNP report alone, chain cached:  {result.report_per_s:8.0f} /s")
    print(f"snp-vtpm bundle, chain cached:   {result.bundle_per_s:8.0f} /s")
    print(f"bundle / report cost:            {result.cost:8.2f}x (target <= 1.5x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
