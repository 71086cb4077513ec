"""Client CPU per database round trip: our pool, asyncpg's pool, a bare connection.

``python -m benchmarks.db_roundtrip [--seconds 1] [--rounds 5] [--state-dir DIR]``

Each variant runs ``SELECT 1`` (``fetchval``) in a loop on a uvloop event loop, as the
broker does, and the figure is this process's CPU time per round trip (``process_time``,
so PostgreSQL's own work is not counted) next to the wall time:

* ``bare``: one ``asyncpg.Connection``, no pool; the floor for any pool.
* ``ours``: ``Database.check()`` through ``broker/store/pool.py``.
* ``asyncpg``: the same through ``asyncpg.Pool`` configured and called exactly as
  ``Database`` did before it had its own pool (no reset query, no inactivity timer,
  acquire under ``asyncio.timeout``).

The pools also run with 16 concurrent callers over 10 connections, where callers queue and
connections are handed over. Variants are interleaved for ``--rounds`` rounds and the
best round is reported: on a shared machine other work only ever adds to a figure. The
PostgreSQL cluster is made by ``broker.localstate`` in ``--state-dir`` (default: a new
temporary directory, removed afterwards) and stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import uvloop

from broker.localstate.postgres import LocalPostgres
from broker.store.database import ACQUIRE_TIMEOUT_S, Database

POOL_MAX = 10
CONCURRENCY = 16

RoundTrip = Callable[[], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class Sample:
    cpu_us: float
    wall_us: float


class _AsyncpgPoolDatabase:
    """What ``Database.connection()`` did on asyncpg's pool (commit cbd5301)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def connect(cls, dsn: str) -> _AsyncpgPoolDatabase:
        async def keep_session(_conn: asyncpg.Connection) -> None:
            return None

        pool = await asyncpg.create_pool(
            dsn,
            min_size=POOL_MAX,
            max_size=POOL_MAX,
            command_timeout=30,
            statement_cache_size=256,
            reset=keep_session,
            max_inactive_connection_lifetime=0,
        )
        return cls(pool)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        async with asyncio.timeout(ACQUIRE_TIMEOUT_S):
            conn = await self.pool.acquire()
        try:
            yield conn
        finally:
            await self.pool.release(conn)

    async def check(self) -> None:
        async with self.connection() as conn:
            await conn.fetchval("SELECT 1")


async def _measure(round_trip: RoundTrip, seconds: float, concurrency: int) -> Sample:
    for _ in range(200):  # warm: statements prepared, connections opened
        await round_trip()
    count = 0
    deadline = time.perf_counter() + seconds

    async def loop() -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            await round_trip()
            count += 1

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return Sample(cpu / count * 1e6, wall / count * 1e6)


async def _run(dsn: str, seconds: float, rounds: int) -> dict[str, Sample]:
    bare = await asyncpg.connect(dsn, command_timeout=30, statement_cache_size=256)
    ours = await Database.connect(dsn, POOL_MAX, POOL_MAX)
    theirs = await _AsyncpgPoolDatabase.connect(dsn)

    async def bare_check() -> None:
        await bare.fetchval("SELECT 1")

    variants: dict[str, tuple[RoundTrip, int]] = {
        "bare": (bare_check, 1),
        "ours": (ours.check, 1),
        "asyncpg": (theirs.check, 1),
        f"ours x{CONCURRENCY}": (ours.check, CONCURRENCY),
        f"asyncpg x{CONCURRENCY}": (theirs.check, CONCURRENCY),
    }
    samples: dict[str, list[Sample]] = {name: [] for name in variants}
    try:
        for _ in range(rounds):
            for name, (round_trip, concurrency) in variants.items():
                samples[name].append(await _measure(round_trip, seconds, concurrency))
    finally:
        await bare.close()
        await ours.close()
        await theirs.pool.close()
    return {
        name: Sample(min(s.cpu_us for s in runs), min(s.wall_us for s in runs))
        for name, runs in samples.items()
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=1.0, help="per variant and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--state-dir", type=Path, help="default: a new temporary directory")
    args = parser.parse_args(argv)
    state = args.state_dir or Path(tempfile.mkdtemp(prefix="keybroker-dbbench-"))
    cluster = LocalPostgres(state)
    try:
        dsn = cluster.up()
        results = uvloop.run(_run(dsn, args.seconds, args.rounds))
    finally:
        cluster.stop()
        if args.state_dir is None:
            shutil.rmtree(state, ignore_errors=True)
    print(f"{'variant':<14} {'client CPU µs':>14} {'wall µs':>9}   (best of {args.rounds})")
    for name, sample in results.items():
        print(f"{name:<14} {sample.cpu_us:>14.1f} {sample.wall_us:>9.1f}")
    print(json.dumps({name: round(sample.cpu_us, 1) for name, sample in results.items()}))


if __name__ == "__main__":
    main()
