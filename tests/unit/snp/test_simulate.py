"""The synthetic kit survives save/load (the simulated guest and the demo reuse one kit).

Writes to pytest's tmp_path: the one place this unit suite does file I/O beyond reading
vectors, because saving files is the behaviour under test.
"""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path

from broker.evidence.snp import verify
from broker.simulate.snp import SnpKit


def test_save_and_load_round_trip(kit: SnpKit, tmp_path: Path) -> None:
    folder = tmp_path / "kit"
    kit.save(folder)
    for name in ("ark", "ask", "vcek"):
        assert stat.S_IMODE((folder / f"{name}.key").stat().st_mode) == 0o600
        assert (folder / f"{name}.pem").read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    loaded = SnpKit.load(folder)
    assert (loaded.product, loaded.chip_id, loaded.tcb) == (kit.product, kit.chip_id, kit.tcb)
    assert (loaded.ark, loaded.ask, loaded.vcek) == (kit.ark, kit.ask, kit.vcek)
    evidence = loaded.sign(loaded.report(report_data=b"\x05" * 64))
    claims = verify(
        evidence, kit.collateral(), now=datetime(2025, 1, 1, tzinfo=UTC), extra_roots=[kit.root()]
    )
    assert claims.report_data == b"\x05" * 64


def test_saving_again_keeps_keys_private(kit: SnpKit, tmp_path: Path) -> None:
    key = tmp_path / "vcek.key"
    key.write_bytes(b"old")
    key.chmod(0o644)
    kit.save(tmp_path)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
