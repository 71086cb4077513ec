"""How long a policy replay takes over 100,000 audit records: ``python -m
benchmarks.policy_replay [--records 100000] [--rounds 3] [--state-dir DIR]``.

A PostgreSQL cluster (``broker.localstate``, in ``--state-dir`` or a temporary directory
removed afterwards) is migrated and loaded with ``--records`` records in the shape the
broker writes: one ``attest`` record, holding the claims of the real Milan report of
``tests/vectors`` (verified here), then one ``release`` record of its token, over the last 20
days, chained as ``audit_append`` chains them (``COPY``). Then the draft, a production SNP
policy with a higher TCB minimum than the one that decided, is replayed over the last 30
days exactly as ``keybroker policy replay`` and the admin API do
(``broker.admin.service.replay_history``): batches read by keyset, JSON parsed, each release
decided again. The figure is the wall time of the best of ``--rounds`` runs, with the
process's CPU time, since on a shared machine other work only ever adds to a figure.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from broker.admin.service import replay_history
from broker.bench.seed import AUDIT_COLUMNS
from broker.evidence.snp import verify
from broker.jcs import canonical_text
from broker.localstate.postgres import LocalPostgres
from broker.policy import load_policy_text
from broker.policy.replay import Replay
from broker.store.audit import GENESIS, chain_hash
from broker.store.database import Database
from broker.store.migrate import migrate
from broker.timeutil import iso, utcnow

_VECTOR = Path(__file__).parents[1] / "tests" / "vectors" / "snp" / "trustee-milan-vcek"

DRAFT = """
format: keybroker-policy/1
name: bench-snp-disk-key
version: 2
admit:
  snp:
    signer: {origin: silicon-vendor}
    minimum_tcb: {bootloader: 2, tee: 0, snp: 9, microcode: 115}
    require:
      - claim: vmpl
        equals: 0
"""


def _claims() -> dict[str, Any]:
    evidence = (_VECTOR / "test-report.bin").read_bytes()
    collateral = {"vcek": (_VECTOR / "test-vcek.der").read_bytes()}
    claims = verify(evidence, collateral, now=datetime(2024, 1, 1, tzinfo=UTC))
    return {"signer": claims.signer.to_json(), "claims": claims.document()}


def _bodies(index: int, claims: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    token = f"{index:032x}"
    common = {
        "tee": "snp",
        "evidence_sha256": hashlib.sha256(token.encode()).hexdigest(),
        "tee_pubkey_thumbprint": "t" * 43,
        "plaintext_in_broker": False,
        "token_id": token,
    }
    attest = {**common, **claims, "binding": {"hash": "sha384"}}
    release = {
        **common,
        "key": {"name": "bench-000001", "version": 1},
        "policy": {"name": "bench-snp-disk-key", "version": 1, "sha256": "a" * 64},
        "section": "snp",
        "clauses_evaluated": 6,
        "reasons": [],
        "envelope_sha256": "e" * 64,
    }
    return attest, release


def _rows(count: int, start: datetime) -> list[tuple[Any, ...]]:
    claims = _claims()
    step = timedelta(days=20) / count
    rows: list[tuple[Any, ...]] = []
    prev = GENESIS
    for seq in range(1, count + 1):
        at = start + step * seq
        attest, release = _bodies((seq + 1) // 2, claims)  # an attest, then its release
        kind, body, key = ("attest", attest, None) if seq % 2 else ("release", release, "k")
        request_id = f"{seq:016x}"
        text = canonical_text(
            {
                **body,
                "at": iso(at),
                "kind": kind,
                "decision": "allow",
                "request_id": request_id,
                "key_name": key,
            }
        )
        digest = chain_hash(prev, seq, text)
        rows.append((seq, at, kind, "allow", request_id, key, text, prev, digest))
        prev = digest
    return rows


async def _load(dsn: str, count: int) -> None:
    db = await Database.connect(dsn, 1, 2)
    try:
        async with db.connection() as conn:
            await migrate(conn)
            if await conn.fetchval("SELECT count(*) FROM audit_log") == count:
                return
            rows = _rows(count, utcnow() - timedelta(days=20, minutes=10))
            async with conn.transaction():
                await conn.copy_records_to_table("audit_log", records=rows, columns=AUDIT_COLUMNS)
                last = rows[-1]
                await conn.execute("UPDATE audit_head SET seq = $1, hash = $2", last[0], last[8])
            await conn.execute("ANALYZE audit_log")
    finally:
        await db.close()


async def _replay(dsn: str) -> tuple[float, float, dict[str, Any]]:
    db = await Database.connect(dsn, 1, 2)
    try:
        draft = load_policy_text(DRAFT, source="draft")
        replay = Replay(draft, utcnow() - timedelta(days=30), timedelta(minutes=5))
        wall, cpu = time.perf_counter(), time.process_time()
        report = await replay_history(db, replay)
        return time.perf_counter() - wall, time.process_time() - cpu, report
    finally:
        await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--state-dir", type=Path)
    args = parser.parse_args()
    state = args.state_dir or Path(tempfile.mkdtemp(prefix="keybroker-replay-"))
    cluster = LocalPostgres(state)
    try:
        dsn = cluster.up()
        asyncio.run(_load(dsn, args.records))
        runs = [asyncio.run(_replay(dsn)) for _ in range(args.rounds)]
        wall, cpu, report = min(runs, key=lambda run: run[0])
        print(
            json.dumps(
                {
                    "records": report["records_read"],
                    "releases_replayed": report["releases_replayed"],
                    "newly_denied": report["newly_denied"]["total"],
                    "seconds": round(wall, 2),
                    "cpu_seconds": round(cpu, 2),
                    "records_per_second": round(report["records_read"] / wall),
                    "all_rounds_seconds": [round(run[0], 2) for run in runs],
                }
            )
        )
    finally:
        cluster.stop()
        if args.state_dir is None:
            shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
