"""How fast does `keybroker kek rotate --rewrap` re-seal stored keys?

Against a PostgreSQL cluster and a SoftHSM token made in a temporary directory: ``--keys``
secrets (32 bytes) are generated and sealed inside the token under the first KEK and stored
as key versions, the KEK is rotated, and ``AdminService.rewrap_keys`` re-seals every version
under the new KEK, as the CLI does (batches of ``REWRAP_BATCH``, each an unwrap and a wrap
per version inside the token, then one UPDATE and an audit record in one transaction under
the rotation lock). Printed: the seconds taken and the versions re-sealed per second (and
per CPU second of this process, which holds SoftHSM: less sensitive to a shared machine),
the HSM's share of it (``Custody.rewrap`` alone, on one batch), and the machine's load; the
run fails unless every version is under the new KEK afterwards (docs/operations.md,
"Rotating and retiring KEKs").

Run: ``python -m benchmarks.kek_rewrap [--keys 10000] [--cpu 0]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from broker.admin.service import REWRAP_BATCH, AdminService
from broker.cli import locate
from broker.localstate.postgres import LocalPostgres
from broker.localstate.softhsm import LocalSoftHsm
from broker.roles import Principal
from broker.runtime import Runtime
from broker.settings import Settings
from hsm.custody import WrappedSecret

SECRET_BYTES = 32
BENCH_ACTOR = Principal(actor="benchmark", role=None)


async def seed(runtime: Runtime, count: int) -> None:
    """``count`` keys of one version each, generated and sealed inside the token."""
    sealed: list[WrappedSecret] = await asyncio.to_thread(
        lambda: [runtime.custody.generate_secret(SECRET_BYTES) for _ in range(count)]
    )
    async with runtime.db.connection() as conn:
        await conn.copy_records_to_table(
            "keys",
            records=[
                (f"bench-{index:06}", 1, wrapped.kek_label, wrapped.blob, wrapped.secret_length)
                for index, wrapped in enumerate(sealed)
            ],
            columns=["name", "version", "kek_label", "wrapped_blob", "secret_length"],
        )


async def measure(state_dir: Path, count: int) -> dict[str, float]:
    postgres = LocalPostgres(state_dir)
    postgres.up()
    softhsm = LocalSoftHsm(state_dir)
    softhsm.up()
    settings = Settings(state_dir=state_dir, log_level="warning")
    try:
        runtime = await Runtime.start(settings, locate.location)
        try:
            admin = AdminService(runtime)
            await seed(runtime, count)
            await admin.rotate_kek(BENCH_ACTOR)
            sample = await _sample(runtime)
            label = await asyncio.to_thread(runtime.custody.current_kek_label)
            hsm_start = time.perf_counter()
            await asyncio.to_thread(runtime.custody.rewrap, sample, label)
            hsm_seconds = (time.perf_counter() - hsm_start) / len(sample)
            start, cpu_start = time.perf_counter(), time.process_time()
            result = await admin.rewrap_keys(BENCH_ACTOR)
            seconds = time.perf_counter() - start
            cpu_seconds = time.process_time() - cpu_start
            status = await admin.kek_status(BENCH_ACTOR)
        finally:
            await runtime.stop()
    finally:
        postgres.stop()
    sealing = {kek["label"]: kek["key_versions"] for kek in status["keks"] if kek["key_versions"]}
    if result["rewrapped"] != count or result["remaining"] != 0 or sealing != {label: count}:
        raise SystemExit(f"re-wrap incomplete: {result}, {sealing}")
    return {
        "keys": count,
        "seconds": seconds,
        "per_second": count / seconds,
        "per_cpu_second": count / cpu_seconds,
        "hsm_per_second": 1 / hsm_seconds,
    }


async def _sample(runtime: Runtime) -> list[WrappedSecret]:
    """One batch's worth of sealed secrets, for the HSM-only figure."""
    return await asyncio.to_thread(
        lambda: [runtime.custody.generate_secret(SECRET_BYTES) for _ in range(REWRAP_BATCH)]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--keys", type=int, default=10000)
    parser.add_argument("--cpu", type=int, default=None, help="pin to this core")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    with tempfile.TemporaryDirectory(prefix="keybroker-rewrap-") as state:
        figures = asyncio.run(measure(Path(state), args.keys))
    print(
        f"{figures['keys']:.0f} key versions re-sealed in {figures['seconds']:.1f} s: "
        f"{figures['per_second']:,.0f}/s end to end, {figures['per_cpu_second']:,.0f} per CPU "
        f"second of this process (SoftHSM runs in it; PostgreSQL does not); the HSM alone "
        f"(unwrap + wrap + destroy) {figures['hsm_per_second']:,.0f}/s; load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()
