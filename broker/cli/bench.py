"""``keybroker bench``: releases per second end to end against the cost floor (docs/performance.md).

It brings up its own PostgreSQL cluster, SoftHSM token and broker under ``--state-dir`` and
drives the broker with simulated guests; the last line of its output is one JSON object.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from broker.cli import UsageError
from broker.errors import KeybrokerError
from broker.hsmcalls import hsm_errors


def _levels(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text}") from None
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError("concurrency levels must be positive integers")
    return levels


def register(subparsers: Any) -> None:
    from broker.bench.scenarios import SCENARIOS  # noqa: PLC0415 - keep `keybroker -h` fast

    bench = subparsers.add_parser(
        "bench",
        help="benchmark releases per second against the cost floor",
        description=__doc__,
    )
    bench.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".keybroker/bench"),
        help="where the benchmark's cluster, token and material live (default .keybroker/bench)",
    )
    bench.add_argument("--scenario", choices=sorted(SCENARIOS), default="snp")
    bench.add_argument(
        "--flow",
        choices=["one-request", "token"],
        default="one-request",
        help="release in one request with the evidence (default), or attest for a token first",
    )
    bench.add_argument(
        "--platforms",
        type=int,
        default=1,
        help="also run the headline with evidence from this many simulated chips (snp)",
    )
    bench.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="also run this many broker processes on one database and token, against one",
    )
    bench.add_argument(
        "--quick", action="store_true", help="floor and one pinned run only (under a minute)"
    )
    bench.add_argument("--duration", type=float, default=15.0, help="seconds measured per run")
    bench.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before each")
    bench.add_argument(
        "--concurrency", type=int, default=16, help="guests of the headline and scale runs"
    )
    bench.add_argument(
        "--levels",
        type=_levels,
        default=(1, 16, 128),
        help="guest counts of the latency runs, comma-separated (default 1,16,128)",
    )
    bench.add_argument(
        "--workers", type=int, default=0, help="workers of the all-cores run (default one a core)"
    )
    bench.add_argument("--generators", type=int, default=2, help="load-generator processes")
    bench.add_argument("--keys", type=int, default=100_000, help="keys of the scale run")
    bench.add_argument(
        "--audit-records", type=int, default=1_000_000, help="audit records of the scale run"
    )
    bench.add_argument("--no-scale", action="store_true", help="skip the scale run")
    bench.add_argument("--floor-seconds", type=float, default=5.0)
    bench.add_argument(
        "--check-every", type=int, default=20, help="open and compare one envelope in N"
    )
    bench.add_argument("--broker-log-level", default="info", help="the broker's log level")
    bench.add_argument(
        "--hsm-threads",
        type=int,
        default=0,
        help="the broker's hsm_threads (default 0: SoftHSM is called on the loop's thread)",
    )
    bench.add_argument(
        "--key-pool", type=int, default=32, help="RSA-3072 guest keys made beforehand (at least)"
    )
    bench.add_argument(
        "--py-spy",
        type=Path,
        metavar="FILE",
        help="also run the headline run under py-spy, writing its collapsed stacks to FILE",
    )
    bench.set_defaults(func=run_bench)


#: Options that must be above zero, and options that must not be below it.
_POSITIVE = (
    "concurrency",
    "duration",
    "floor_seconds",
    "check_every",
    "key_pool",
    "generators",
    "keys",
    "platforms",
    "replicas",
)
_NOT_NEGATIVE = ("warmup", "workers", "hsm_threads", "audit_records")


def check_numbers(args: argparse.Namespace) -> None:
    """:class:`UsageError` naming the first number option out of its range (``--platforms``
    beyond what the scenario simulates among them)."""
    from broker.bench.scenarios import scenario  # noqa: PLC0415

    for name in _POSITIVE:
        value = getattr(args, name)
        if value <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive, found {value}")
    for name in _NOT_NEGATIVE:
        value = getattr(args, name)
        if value < 0:
            raise UsageError(f"--{name.replace('_', '-')} must not be negative, found {value}")
    most = scenario(args.scenario).max_platforms
    if args.platforms > most:
        raise UsageError(
            f"--platforms: scenario {args.scenario} simulates at most {most}, found "
            f"{args.platforms}"
        )


def exit_status(summary: Mapping[str, Any]) -> int:
    """0 when no request of any run failed (warm-up included), else 1."""
    return 0 if summary["errors"] == 0 else 1


def run_bench(args: argparse.Namespace) -> int:
    from broker.bench import report, runner  # noqa: PLC0415

    check_numbers(args)
    levels = tuple(sorted(set(args.levels) | {args.concurrency}))
    options = runner.Options(
        state_dir=args.state_dir,
        scenario=args.scenario,
        quick=args.quick,
        duration_s=args.duration,
        warmup_s=args.warmup,
        concurrency=args.concurrency,
        levels=levels,
        workers=args.workers,
        generators=args.generators,
        scale_keys=args.keys,
        scale_audit=args.audit_records,
        scale=not args.no_scale,
        floor_s=args.floor_seconds,
        check_every=args.check_every,
        broker_log_level=args.broker_log_level,
        hsm_threads=args.hsm_threads,
        key_pool=args.key_pool,
        py_spy=args.py_spy,
        flow=args.flow,
        platforms=args.platforms,
        replicas=args.replicas,
    )

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    try:
        with hsm_errors():  # the benchmark opens the token itself
            result = runner.run(options, say)
    except KeybrokerError as exc:
        print(f"keybroker bench: {exc.detail}", file=sys.stderr)
        return 1

    print(report.table(result))
    print(report.json_line(result), flush=True)
    return exit_status(report.summary(result))
