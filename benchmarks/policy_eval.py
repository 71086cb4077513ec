"""Policy evaluations per second on one core: ``python -m benchmarks.policy_eval``.

The policy is a typical production SNP policy (signer origin, twenty approved measurements,
a minimum TCB of four components, two further conditions); the claims mirror the
go-sev-guest Milan report with debug off. Both an allowing and a denying evaluation are
timed, each for ``--seconds`` (default 1), and the explanation is built in full every time.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from datetime import UTC, datetime

from broker.evidence.claims import Claims, Signer, SignerOrigin, Tee
from broker.policy import Policy, evaluate, load_policy_text

MEASUREMENT = (
    "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a6"
    "08eb0cf2e4872b01"
)
_OTHER_IMAGES = "".join(f'      - measurement: "{index:096x}"\n' for index in range(1, 20))
POLICY = f"""
format: keybroker-policy/1
name: bench-snp-production
version: 1
reference_values:
  images:
    tee: snp
    values:
      - label: current image
        measurement: {MEASUREMENT}
{_OTHER_IMAGES}
admit:
  snp:
    signer:
      origin: silicon-vendor
    reference_values: [images]
    minimum_tcb: {{bootloader: 2, tee: 0, snp: 5, microcode: 68}}
    require:
      - claim: vmpl
        equals: 0
      - claim: policy.migrate_ma
        equals: false
"""


def claims() -> Claims:
    tcb = {"bootloader": 2, "tee": 0, "snp": 5, "microcode": 68, "fmc": None}
    return Claims(
        tee=Tee.SNP,
        signer=Signer("amd", SignerOrigin.SILICON_VENDOR, "amd-ark-milan", "vcek", "Milan"),
        debug=False,
        fields={
            "version": 2,
            "guest_svn": 0,
            "vmpl": 0,
            "policy": {
                "abi_minor": 0,
                "abi_major": 0,
                "smt": True,
                "migrate_ma": False,
                "debug": False,
                "single_socket": False,
            },
            "measurement": MEASUREMENT,
            "report_data": "0102030405" + "00" * 59,
            "host_data": "00" * 32,
            "chip_id": "3a" * 64,
            "reported_tcb": tcb,
            "current_tcb": tcb,
            "committed_tcb": tcb,
            "launch_tcb": tcb,
        },
    )


def rate(policy: Policy, subject: Claims, seconds: float) -> float:
    now = datetime(2023, 1, 1, tzinfo=UTC)
    count, batch = 0, 1000
    start = time.perf_counter()
    while True:
        for _ in range(batch):
            evaluate(policy, subject, now)
        count += batch
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per case")
    args = parser.parse_args()
    policy = load_policy_text(POLICY, source="bench")
    allowed = claims()
    denied = replace(allowed, debug=True, fields={**allowed.document(), "vmpl": 1})
    if not evaluate(policy, allowed, datetime(2023, 1, 1, tzinfo=UTC)).allow:
        raise SystemExit("bench policy does not admit its own claims")
    for label, subject in (("allow", allowed), ("deny", denied)):
        clauses = len(evaluate(policy, subject, datetime(2023, 1, 1, tzinfo=UTC)).explanation)
        per_second = rate(policy, subject, args.seconds)
        print(f"policy eval ({label}, {clauses} clauses): {per_second:,.0f} evaluations/s")


if __name__ == "__main__":
    main()
